"""The API's description: the OpenAPI schema's security, errors and strict bodies (`schema`),
and its docs page with Swagger UI from local assets (`ui`)."""
