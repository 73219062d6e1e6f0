#!/usr/bin/env bash
# Installs flash to a temporary prefix, builds tests/data/plugins/my_loss.c
# out of tree with the installed flash.pc, and loads it through a config's
# plugin_paths with the installed flash: it is listed, its keys are checked
# and its create runs.
# Env (set by CTest): FLASH_SOURCE_DIR, FLASH_BINARY_DIR.
set -euo pipefail
: "${FLASH_SOURCE_DIR:?}" "${FLASH_BINARY_DIR:?}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

cmake --install "$FLASH_BINARY_DIR" --prefix "$tmp/prefix" >/dev/null
pcdir=$(dirname "$(find "$tmp/prefix" -name flash.pc | head -n1)")
[[ -f $pcdir/flash.pc ]] || fail "flash.pc not installed"
flash=$tmp/prefix/bin/flash
[[ -x $flash ]] || fail "flash binary not installed"
[[ -f $tmp/prefix/include/flash/plugin.h ]] || fail "headers not installed"

mkdir -p "$tmp/work/plugins" "$tmp/work/configs"
cp "$FLASH_SOURCE_DIR/tests/data/plugins/my_loss.c" "$tmp/work/"
(
  cd "$tmp/work"
  export PKG_CONFIG_PATH=$pcdir
  cflags=$(pkg-config --cflags flash)
  [[ $cflags == *"$tmp/prefix"* ]] || fail "pkg-config --cflags points elsewhere: $cflags"
  # shellcheck disable=SC2086
  ${CC:-cc} -shared -fPIC -Wall -Wextra -Werror my_loss.c $cflags -o plugins/my_loss.so
)

# the installed flash finds its own plugins without any environment
env -u FLASH_PLUGIN_DIR -u FLASH_PLUGIN_PATH "$flash" plugins >"$tmp/builtin" || fail "installed flash plugins failed"
grep -q "^loss  *mse .*$tmp/prefix/" "$tmp/builtin" || fail "installed flash lacks its plugins: $(cat "$tmp/builtin")"

cat >"$tmp/work/configs/pipeline.yaml" <<'YAML'
# plugin_paths are relative to this file
plugin_paths: [../plugins]
dataset: {plugin: toy2d, kind: two_moons, n_train: 100, n_test: 50}
losses:
  - {plugin: mse, weight: 1.0}
  - {plugin: my_loss, weight: 0.5}
YAML
cd "$tmp"
env -u FLASH_PLUGIN_DIR -u FLASH_PLUGIN_PATH "$flash" plugins --config work/configs/pipeline.yaml --kind loss >"$tmp/list" ||
  fail "flash plugins --config failed"
grep -q "^loss  *my_loss  *$tmp/work/configs/\.\./plugins/my_loss\.so  *mean absolute error" "$tmp/list" ||
  fail "my_loss not listed: $(cat "$tmp/list")"

env -u FLASH_PLUGIN_DIR -u FLASH_PLUGIN_PATH "$flash" check work/configs/pipeline.yaml >"$tmp/out" 2>"$tmp/err" ||
  fail "flash check failed: $(cat "$tmp/err")"
grep -q "plugin: my_loss" "$tmp/out" || fail "resolved config lacks my_loss"
grep -q "3 components created" "$tmp/err" || fail "not every component created: $(cat "$tmp/err")"

# its key list and its create are the ones used
rc=0
"$flash" check work/configs/pipeline.yaml --set 'losses=[{plugin: my_loss, wieght: 1}]' 2>"$tmp/err" >/dev/null || rc=$?
((rc == 2)) || fail "unknown key: exit $rc"
grep -q "loss 'my_loss' has no key 'wieght' (did you mean 'weight'?)" "$tmp/err" || fail "$(cat "$tmp/err")"
rc=0
"$flash" check work/configs/pipeline.yaml --set 'losses=[{plugin: my_loss, weight: -1}]' 2>"$tmp/err" >/dev/null || rc=$?
((rc == 2)) || fail "bad weight: exit $rc"
grep -q "weight must be > 0" "$tmp/err" || fail "$(cat "$tmp/err")"
echo "ok: out-of-tree plugin built with pkg-config, listed and used"
