#!/usr/bin/env bash
# Every ```yaml block of README.md and CONTRIBUTING.md passes `flash check`:
# the examples people copy are configs that work. A snippet that extends
# `base.yaml` gets configs/quickstart.yaml as its base. A snippet that
# cannot stand alone is preceded by `<!-- check: skip (reason) -->`; keep
# those rare and say why.
# Env (set by CTest): FLASH, FLASH_SOURCE_DIR.
: "${FLASH:?}" "${FLASH_SOURCE_DIR:?}"
source "${BASH_SOURCE%/*}/common.bash"
cd "$tmp"
cp "$FLASH_SOURCE_DIR/configs/quickstart.yaml" base.yaml
python3 - "$FLASH_SOURCE_DIR" "$tmp" <<'PY'
import os, re, sys
src, out = sys.argv[1], sys.argv[2]
n = 0
for doc in ("README.md", "CONTRIBUTING.md"):
    text = open(os.path.join(src, doc), encoding="utf-8").read()
    for m in re.finditer(r"(?:^(<!-- check: skip \((.+?)\) -->)\n)?^```yaml\n(.*?)^```", text, re.S | re.M):
        line = text.count("\n", 0, m.start(3))
        name = f"{doc.split('.')[0].lower()}_{line}.yaml"
        if m.group(1):
            print(f"skip {doc}:{line}: {m.group(2)}")
            continue
        with open(os.path.join(out, name), "w", encoding="utf-8") as f:
            f.write(m.group(3))
        n += 1
with open(os.path.join(out, "count"), "w") as f:
    f.write(str(n))
PY
(($(cat count) >= 1)) || fail "no yaml snippets found"
for f in readme_*.yaml contributing_*.yaml; do
  [[ -e $f ]] || continue
  "$FLASH" check "$f" >/dev/null 2>err || fail "$f (the snippet at that line): $(cat err)"
done
echo "ok: $(cat count) yaml snippets of README.md and CONTRIBUTING.md pass flash check"
