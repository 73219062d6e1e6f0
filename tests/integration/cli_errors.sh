#!/usr/bin/env bash
# `flash check` on broken configs: each exits 2 and says file:line:col and
# the key; usage errors exit 2; --help works on every subcommand.
# Env (set by CTest): FLASH.
: "${FLASH:?}"
source "${BASH_SOURCE%/*}/common.bash"
cd "$tmp"

printf 'dataset:\n  plugin: toy2d\n  kind: [checkerboard\nlosses: [{plugin: mse}]\n' >syntax.yaml
expect 2 "syntax error" 'syntax\.yaml:[0-9]+:[0-9]+' -- check syntax.yaml

printf 'dataset: {plugin: toy2d}\nlosses:\n  - plugin: mse\n    wieght: 2\n' >unknown_key.yaml
expect 2 "unknown key" 'unknown_key\.yaml:4:5' 'wieght' "did you mean 'weight'" -- check unknown_key.yaml
printf 'dataset: {plugin: toy2d}\nloss: {plugin: mse}\n' >unknown_top.yaml
expect 2 "unknown top-level key" 'unknown_top\.yaml:2:[0-9]+' "unknown top-level key 'loss' \(did you mean 'losses'\?\)" \
  -- check unknown_top.yaml

printf 'dataset:\n  plugin: toy2d\n  n_train: lots\n' >wrong_type.yaml
expect 2 "wrong type" 'wrong_type\.yaml:3:[0-9]+' 'n_train' -- check wrong_type.yaml

printf 'dataset:\n  plugin: toy2e\n' >unknown_plugin.yaml
expect 2 "unknown plugin" 'unknown_plugin\.yaml:2:[0-9]+' 'dataset' "no dataset named 'toy2e' \(did you mean 'toy2d'\?\)" \
  -- check unknown_plugin.yaml

printf 'dataset: {plugin: toy2d}\nplugin_paths:\n  - no/such/dir\n' >missing_file.yaml
expect 2 "missing plugin path" 'missing_file\.yaml:3:[0-9]+' 'plugin_paths' 'no/such/dir' -- check missing_file.yaml

printf 'extends: no_such_base.yaml\ndataset: {plugin: toy2d}\n' >missing_base.yaml
expect 2 "missing base" 'missing_base\.yaml:1:[0-9]+' 'extends' 'no_such_base\.yaml' -- check missing_base.yaml

printf 'dataset:\n  plugin: toy2d\n  kind: moons\n' >bad_value.yaml
expect 2 "bad enum value" 'bad_value\.yaml:3:[0-9]+' 'kind' 'two_moons' -- check bad_value.yaml

printf 'dataset: {plugin: toy2d}\nevaluator: {plugin: mlp, dim: 2}\n' >good.yaml
expect 0 "valid config" 'ok' -- check good.yaml
grep -q 'plugin: toy2d' out || fail "resolved config not printed"
expect 2 "--set unknown key" '--set' 'dataset\.knid' "did you mean 'kind'" -- check good.yaml --set dataset.knid=moons
expect 0 "--set applied" -- check good.yaml --set dataset.n_train=25
grep -q 'n_train: 25' out || fail "--set not in the resolved config: $(cat out)"

# lists of slots are checked too; x- blocks are free-form (anchors), checked where they are used
printf 'x-data: &d {plugin: toy2d, kind: two_moons, wieght: 1}\ndataset: {plugin: toy2d, kind: two_moons}\nlosses: [{plugin: mse}, {plugin: mse, weight: 2}]\n' >nested.yaml
expect 0 "lists of slots" '3 components created' -- check nested.yaml
printf 'losses:\n  - {plugin: mse}\n  - {plugin: mse, wieght: 1}\n' >nested_bad.yaml
expect 2 "unknown key in a list" 'nested_bad\.yaml:3:[0-9]+' 'losses\.1\.wieght|losses\[1\]\.wieght' -- check nested_bad.yaml

expect 2 "missing config" 'nope\.yaml' -- check nope.yaml
expect 2 "no config" 'missing CONFIG' -- check
expect 2 "unknown option" "unknown option '--frobnicate'" -- check good.yaml --frobnicate
expect 2 "unknown command" "did you mean 'check'" -- chekc good.yaml
expect 2 "unknown kind" "unknown kind 'losses'" -- plugins --kind losses
expect 2 "no arguments" 'usage' --

for cmd in plugins check train distill sample eval run sweep bench report; do
  expect 0 "$cmd --help" -- "$cmd" --help
  grep -q "usage: flash $cmd" out || fail "$cmd --help: $(cat out)"
  expect 0 "help $cmd" -- help "$cmd"
  grep -q "usage: flash $cmd" out || fail "help $cmd: $(cat out)"
done
expect 0 "--version" -- --version
grep -qE '^flash [0-9]+\.[0-9]+\.[0-9]+ \(plugin ABI [0-9]+\.[0-9]+\)$' out || fail "--version: $(cat out)"
expect 0 "--help" -- --help
grep -q 'check' out || fail "--help lacks the commands"
echo "ok: config errors exit 2 with file:line:col and the key"
