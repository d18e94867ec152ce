#!/bin/sh
# Zip the extension for the Chrome Web Store:
#   sh extension/package.sh            → dist/cookiesync-extension-<version>.zip
#   sh extension/package.sh OUT_DIR    → OUT_DIR/cookiesync-extension-<version>.zip
# The version comes from extension/manifest.json. Only what the browser needs is
# packed (no tests, tools or docs); the zip is reproducible (fixed timestamps, sorted).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
out_dir=${1:-"$root/dist"}
python=${PYTHON:-python3}

exec "$python" - "$here" "$out_dir" <<'PY'
import json, re, sys, zipfile
from pathlib import Path

ext, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
manifest = json.loads((ext / "manifest.json").read_text())
version = manifest["version"]
if not re.fullmatch(r"\d+(\.\d+){0,3}", version):
    sys.exit(f"package.sh: manifest version {version!r} is not 1-4 dot-separated integers")
if "key" in manifest:
    sys.exit("package.sh: remove \"key\" from manifest.json (the Chrome Web Store refuses it)")
loopback = [h for h in manifest.get("host_permissions", []) if re.search(r"//(localhost|127\.|\[::1\])", h)]
if loopback:
    sys.exit(f"package.sh: development host permissions in manifest.json: {loopback}")

files = ["manifest.json", "background.js", "popup.html", "popup.js", "popup.css", "options.html", "options.js"]
files += sorted(p.relative_to(ext).as_posix() for p in (ext / "lib").glob("*.js"))
files += sorted(p.relative_to(ext).as_posix() for p in (ext / "icons").glob("*.png"))
referenced = [manifest["background"]["service_worker"], manifest["action"]["default_popup"],
              manifest["options_ui"]["page"], *manifest["icons"].values(), *manifest["action"]["default_icon"].values()]
missing = [f for f in set(files) | set(referenced) if not (ext / f).is_file()]
if missing:
    sys.exit(f"package.sh: missing files: {sorted(missing)}")
# Every relative module import must be packed too.
for f in [f for f in files if f.endswith(".js")]:
    for spec in re.findall(r"""(?:import|from)\s*['"](\.{1,2}/[^'"]+)['"]""", (ext / f).read_text()):
        target = ((ext / f).parent / spec).resolve().relative_to(ext.resolve()).as_posix()
        if target not in files:
            sys.exit(f"package.sh: {f} imports {spec}, which is not packed")

out_dir.mkdir(parents=True, exist_ok=True)
out = out_dir / f"cookiesync-extension-{version}.zip"
tmp = out.with_suffix(".zip.tmp")
with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
    for f in sorted(files):
        info = zipfile.ZipInfo(f, date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(info, (ext / f).read_bytes())
tmp.replace(out)
print(f"{out} ({len(files)} files, {out.stat().st_size} bytes, version {version})")
PY
