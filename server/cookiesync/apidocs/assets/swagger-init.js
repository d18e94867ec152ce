// Starts Swagger UI on the docs page (apidocs/ui.py): the schema from this service's own
// /schema/openapi.json, the online validator off (it would send the schema's URL to a third
// party), the plain layout (no top bar to load other people's schemas from).
window.addEventListener("DOMContentLoaded", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.spec,
    dom_id: "#swagger-ui",
    validatorUrl: null,
    deepLinking: true,
    layout: "BaseLayout",
    presets: [SwaggerUIBundle.presets.apis],
  });
});
