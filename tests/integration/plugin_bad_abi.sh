#!/usr/bin/env bash
# Plugins that break the ABI contract are refused with a message naming the
# file and both versions; flash exits non-zero and does not crash.
# Env (set by CTest): FLASH, FLASH_SOURCE_DIR.
set -euo pipefail
: "${FLASH:?}" "${FLASH_SOURCE_DIR:?}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cc=${CC:-cc}
data=$FLASH_SOURCE_DIR/tests/data/plugins
mkdir -p "$tmp/plugins" "$tmp/good"
for p in bad_abi no_entry short_struct; do
  "$cc" -shared -fPIC -Wall -Wextra -Werror "$data/$p.c" -I"$FLASH_SOURCE_DIR/include" -o "$tmp/plugins/$p.so"
done
"$cc" -shared -fPIC -Wall -Wextra -Werror "$data/abi_1_0.c" -I"$FLASH_SOURCE_DIR/include" -o "$tmp/good/abi_1_0.so"
# the host's ABI, as the messages print it
plugin_h=$FLASH_SOURCE_DIR/include/flash/plugin.h
host_abi="ABI $(awk '$2 == "FLASH_ABI_MAJOR" {print $3}' "$plugin_h").$(awk '$2 == "FLASH_ABI_MINOR" {print $3}' "$plugin_h")"

fail() { echo "FAIL: $*" >&2; exit 1; }

# expect_refused NAME RC-FILE MSG-FILE PATTERN...: non-zero, not a signal, message matches
expect_refused() {
  local what=$1 rc=$2 msg=$3
  shift 3
  ((rc != 0)) || fail "$what: exit 0"
  ((rc < 128)) || fail "$what: crashed (exit $rc)"
  for pat in "$@"; do
    grep -qF -- "$pat" "$msg" || fail "$what: message lacks '$pat': $(cat "$msg")"
  done
}

cat >"$tmp/bad.yaml" <<'YAML'
plugin_paths: [plugins/bad_abi.so]
loss: {plugin: mse}
YAML

# through a config's plugin_paths
rc=0
"$FLASH" check "$tmp/bad.yaml" >"$tmp/out" 2>"$tmp/err" || rc=$?
expect_refused "check bad_abi" "$rc" "$tmp/err" "$tmp/plugins/bad_abi.so" "ABI 99.0" "$host_abi" "bad.yaml:1:"

# through FLASH_PLUGIN_PATH
for p in bad_abi no_entry short_struct; do
  rc=0
  FLASH_PLUGIN_PATH=$tmp/plugins/$p.so "$FLASH" plugins >"$tmp/out" 2>"$tmp/err" || rc=$?
  case $p in
  bad_abi) expect_refused "$p" "$rc" "$tmp/err" "$tmp/plugins/bad_abi.so" "ABI 99.0" "$host_abi" ;;
  no_entry) expect_refused "$p" "$rc" "$tmp/err" "$tmp/plugins/no_entry.so" "flash_plugin_entry" "$host_abi" ;;
  short_struct) expect_refused "$p" "$rc" "$tmp/err" "$tmp/plugins/short_struct.so" "short_loss" "short struct" ;;
  esac
done

# a directory holding a bad plugin is refused the same way
rc=0
FLASH_PLUGIN_PATH=$tmp/plugins "$FLASH" plugins >"$tmp/out" 2>"$tmp/err" || rc=$?
expect_refused "dir" "$rc" "$tmp/err" "$tmp/plugins/bad_abi.so" "ABI 99.0"

# a plugin of an older minor of the host's major loads
[[ $host_abi != "ABI 1.0" ]] || fail "the host is ABI 1.0: the older-minor case tests nothing"
FLASH_PLUGIN_PATH=$tmp/good/abi_1_0.so "$FLASH" plugins --kind loss >"$tmp/out" 2>"$tmp/err" ||
  fail "ABI 1.0 plugin on a $host_abi host: $(cat "$tmp/err")"
grep -q abi_1_0_loss "$tmp/out" || fail "ABI 1.0 plugin not listed: $(cat "$tmp/out")"
echo "ok: bad plugins refused, an ABI 1.0 plugin loads on a $host_abi host"
