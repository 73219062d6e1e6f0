#!/usr/bin/env bash
# tools/repro/target_ceiling on the exact 2-D mixture teachers: the error of
# the teacher's k-step DDIM target (Imagine Flash eq. 7, the kit's
# operator) against its 100-step reference falls with k at every t and is 0
# at k = 100 (the kit's operator and the `ddim` sampler plugin on the same
# timesteps agree); one step from x_t gives the posterior mean E[x0 | x_t],
# checked against the closed form computed here in numpy from the config
# (unguided on configs/quickstart.yaml, and with guidance w = 3 on the
# class-conditional mixture of configs/gmm2d/lcm_guided.yaml: m_null +
# w (m_class - m_null)); --samples writes what `flash eval` scores; bad
# usage and a config without data exit 2.
# Env (set by CTest): FLASH, FLASH_SOURCE_DIR, FLASH_BINARY_DIR.
: "${FLASH:?}" "${FLASH_SOURCE_DIR:?}" "${FLASH_BINARY_DIR:?}"
source "${BASH_SOURCE%/*}/common.bash"
TC=$FLASH_BINARY_DIR/bin/target_ceiling
[[ -x $TC ]] || fail "no $TC"
cd "$FLASH_SOURCE_DIR"
qs=configs/quickstart.yaml
guided=configs/gmm2d/lcm_guided.yaml

"$TC" "$qs" --n 512 --k 1,4,8,16,100 --out "$tmp/qs" >"$tmp/qs.tsv" 2>"$tmp/err" || fail "quickstart: $(cat "$tmp/err")"
# columns: t solver k nfe rms_err rel_err ms_per_target
awk -F'\t' '
  /^#/ || $1 == "t" { next }
  $2 == "ddim" {
    rows++
    if ($4 != $3) { print "t = " $1 ": ddim k = " $3 " took " $4 " NFEs"; bad = 1 }
    if ($3 == 100 && $5 + 0 > 1e-6) { print "t = " $1 ": ddim k = 100 is " $5 " from the reference, not 0"; bad = 1 }
    if (($1 in last) && !($5 + 0 < last[$1])) { print "t = " $1 ": ddim k = " $3 " error " $5 " not below " last[$1]; bad = 1 }
    last[$1] = $5 + 0
  }
  END { if (rows != 15) { print "expected 15 ddim rows, got " rows + 0; bad = 1 } exit bad }
' "$tmp/qs.tsv" || fail "quickstart table: $(cat "$tmp/qs.tsv")"
grep -q $'^500\tdpmpp_2m\t16\t16\t' "$tmp/qs.tsv" || fail "no dpmpp_2m row: $(cat "$tmp/qs.tsv")"
for t in 999 750 500; do
  [[ -f $tmp/qs/t${t}_ddim1.npy && -f $tmp/qs/t${t}_xt.npy && -f $tmp/qs/t${t}_ref.npy ]] || fail "t = $t: arrays missing"
done

"$TC" "$guided" --guidance 3 --n 512 --k 1,100 --solvers ddim --out "$tmp/g" >"$tmp/g.tsv" 2>"$tmp/err" ||
  fail "guided: $(cat "$tmp/err")"
grep -q 'guidance scale w = 3, labels from the dataset' "$tmp/g.tsv" || fail "guided header: $(cat "$tmp/g.tsv")"
awk -F'\t' '$2 == "ddim" && $3 == 1 && $4 != 2 { exit 1 }' "$tmp/g.tsv" || fail "guided: a step is not 2 NFEs"

# The closed form: each component diffused to t is N(alpha mu_k, (alpha^2
# s_k^2 + sigma^2) I), so E[x0 | x_t] is the responsibility-weighted
# mu_k + alpha s_k^2 / (alpha^2 s_k^2 + sigma^2) (x_t - alpha mu_k).
if ! python3 -c 'import numpy, yaml' 2>/dev/null; then
  echo "note: numpy or PyYAML missing, the closed form is not checked"
else
  python3 - "$qs" "$tmp/qs" 1 "$guided" "$tmp/g" 3 <<'PY' || fail "one DDIM step is not the posterior mean"
import sys
import numpy as np
import yaml

def posterior_mean(g, xt, alpha, sigma, cls=None):
    mu, s = np.array(g["means"], float), np.array(g["stds"], float)
    w = np.array(g.get("weights", [1.0] * len(mu)), float)
    w = w / w.sum()
    var = alpha**2 * s**2 + sigma**2                                   # (K)
    d2 = ((xt[:, None, :] - alpha * mu[None]) ** 2).sum(-1)            # (N, K)
    logp = np.log(w)[None] - 0.5 * d2 / var[None] - mu.shape[1] / 2 * np.log(var)[None]
    if cls is not None:                                               # the class's components only
        logp = np.where(np.array(g["classes"])[None] == cls[:, None], logp, -np.inf)
    r = np.exp(logp - logp.max(1, keepdims=True))
    r /= r.sum(1, keepdims=True)
    ek = mu[None] + (alpha * s**2 / var)[None, :, None] * (xt[:, None, :] - alpha * mu[None])
    return (r[..., None] * ek).sum(1)

args = sys.argv[1:]
for cfg_path, out, w in zip(args[0::3], args[1::3], args[2::3]):
    cfg = yaml.safe_load(open(cfg_path))
    g, sch = cfg["teacher"], cfg["schedule"]
    assert sch.get("beta_schedule") == "scaled_linear", sch
    T = sch.get("num_train_timesteps", 1000)
    betas = np.linspace(sch["beta_start"] ** 0.5, sch["beta_end"] ** 0.5, T) ** 2
    ac = np.cumprod(1.0 - betas)
    w = float(w)
    labels = np.load(f"{out}/labels.npy") if "classes" in g else None
    for t in (999, 750, 500):
        alpha, sigma = np.sqrt(ac[t]), np.sqrt(1.0 - ac[t])
        xt = np.load(f"{out}/t{t}_xt.npy").astype(float)
        want = posterior_mean(g, xt, alpha, sigma)
        if labels is not None:
            want = want + w * (posterior_mean(g, xt, alpha, sigma, labels) - want)
        got = np.load(f"{out}/t{t}_ddim1.npy")
        err = np.abs(got - want).max() / np.abs(want).max()
        print(f"{cfg_path} t = {t}: one DDIM step vs E[x0 | x_t] (w = {w:g}): max relative difference {err:.1e}")
        if not err < 1e-4:
            sys.exit(1)
    # x_t holds the data it was made from: at t = 500 the reference lands near x0
    x0, ref = np.load(f"{out}/x0.npy"), np.load(f"{out}/t500_ref.npy")
    assert np.sqrt(((ref - x0) ** 2).mean()) < np.sqrt((x0**2).mean()), "reference unrelated to the data"
PY
fi

# pure-noise samples for flash eval
"$TC" "$qs" --n 64 --t 999 --k 4 --solvers ddim --samples 300 --out "$tmp/s" >/dev/null 2>"$tmp/err" ||
  fail "samples: $(cat "$tmp/err")"
(( $(stat -c %s "$tmp/s/noise_ddim4.npy") == 128 + 300 * 2 * 4 )) || fail "noise_ddim4.npy has the wrong size"
[[ -f $tmp/s/noise_ref.npy ]] || fail "no noise_ref.npy"
"$FLASH" eval "$qs" --samples "$tmp/s/noise_ddim4.npy" >"$tmp/eval.txt" 2>&1 || fail "flash eval: $(cat "$tmp/eval.txt")"
grep -q sliced_wasserstein "$tmp/eval.txt" || fail "flash eval: $(cat "$tmp/eval.txt")"

# bad input: exit 2 with a message
bad() { # NAME PATTERN ARGS...
  local name=$1 pat=$2 rc=0
  shift 2
  "$TC" "$@" >/dev/null 2>"$tmp/err" || rc=$?
  ((rc == 2)) || fail "$name: exit $rc, want 2: $(cat "$tmp/err")"
  grep -qE -- "$pat" "$tmp/err" || fail "$name: stderr lacks /$pat/: $(cat "$tmp/err")"
}
bad "no config" "missing CONFIG"
bad "unknown option" "unknown option '--kk'" "$qs" --kk 4
bad "bad t" "--t: expected" "$qs" --t 999,abc
bad "t past T" "past the schedule's last timestep" "$qs" --set schedule.num_train_timesteps=500 --t 999
bad "bad solver" "--solvers" "$qs" --solvers heun
bad "samples without out" "--out DIR" "$qs" --samples 10
bad "missing file" "no-such.yaml" "$tmp/no-such.yaml"
bad "config key" "did you mean" "$qs" --set teacher.stdz=1
bad "no dataset" "needs a .dataset:. slot" configs/gmm2d/guided.yaml
echo "target_ceiling: ok"
