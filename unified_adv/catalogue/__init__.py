"""The attack catalogue: one entry per attack (parameters, defaults, threat model,
cross-check tolerance, randomness, EOT, docs), and the measured speed table.

    params.py     Param (type, default, bounds) and the shared parameters
    threats.py    threat models as classes: FixedEpsilon, Minimization, PixelBudget, Noise
    entry.py      AttackDef, one attack's facts
    gradient.py   fgsm, bim, pgd, mifgsm          minimal.py    deepfool, cw_l2, lbfgs
    black_box.py  one_pixel, square, hopskipjump, boundary
    universal.py  universal                       noise.py      gaussian_noise
    attacks.py    ATTACKS (every entry, by name), ALL_PARAMS, PARAM_KINDS, MATTERS
    speed.py      `backends: fastest`, from speed_table.json
"""
