# Robustness of the fixed-budget students (docs/results/lang-noise-fixed/run.sh) on the sweep's scale: the worst case
# over the 5 attack LRs after 100 steps, (P - P_MaxEnt) / (P_oracle - P_MaxEnt) with the MaxEnt teacher's
# and the oracle's worst-case finals from runs/lang-methods/results.csv; mean over seeds with the same
# 95% bootstrap as `undo sweep collect` (src/results/bootstrap.cpp: 4000 draws, splitmix64, seed as there).
import csv, json, sys
M = (1 << 64) - 1
def splitmix64(x):
    x = (x + 0x9e3779b97f4a7c15) & M
    x = ((x ^ (x >> 30)) * 0xbf58476d1ce4e5b9) & M
    x = ((x ^ (x >> 27)) * 0x94d049bb133111eb) & M
    return x ^ (x >> 31)
def bootstrap(sample, seed, draws=4000, level=0.95):
    h, means = seed, []
    for _ in range(draws):
        s = 0.0
        for _ in sample:
            h = splitmix64(h); s += sample[h % len(sample)]
        means.append(s / len(sample))
    means.sort()
    at = lambda q: means[min(len(means) - 1, int(q * len(means)))]
    return sum(sample) / len(sample), at((1 - level) / 2), at(1 - (1 - level) / 2)
rows = list(csv.DictReader(open('runs/lang-methods/results.csv')))
worst = {r['model']: float(r['worst_forget_final']) for r in rows}
lo, hi = worst['unlearn-maxent'], worst['oracle']
seed = int(sys.argv[1])
for a in ['0.8', '0.5']:
    vals = []
    for s in ['1', '2', '3']:
        pts = [json.loads(l) for l in open(f'runs/lang-fixed/a{a}-s{s}/attack/attack_worst.jsonl')]
        final = max(pts, key=lambda p: p['step'])
        vals.append((final['forget_ce'] - lo) / (hi - lo))
    m, l, h = bootstrap(vals, seed)
    print(f'alpha {a}: per seed {[round(v, 3) for v in vals]}, mean {m:.2f} [{l:.2f}, {h:.2f}]')
