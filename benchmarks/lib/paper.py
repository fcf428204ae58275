"""The ExpTest paper's reported numbers (arXiv 2411.16975, Tables 1-4).

Kept apart from our results: reports print them in their own columns, and
nothing here is ever written into a column of ours. Values are (mean, std)
over n = 5 seeds (Table 3's SGD at eta_max: n = 4), test accuracy in percent
or test MSE.
"""

# Table 1: MNIST logistic regression, test accuracy (%), rate f * eta_max.
MNIST_FACTORS = (0.001, 0.01, 0.1, 1.0, 10.0)
MNIST = {
    "exptest": {f: (92.30, 0.07) for f in MNIST_FACTORS},
    "adam": dict(zip(MNIST_FACTORS, [(91.45, 0.07), (92.35, 0.06), (90.20, 0.50),
                                     (88.92, 0.76), (88.30, 1.55)])),
    "sgd": dict(zip(MNIST_FACTORS, [(82.74, 0.60), (89.86, 0.16), (91.96, 0.05),
                                    (91.65, 0.29), (87.96, 2.65)])),
    "momentum": dict(zip(MNIST_FACTORS, [(89.86, 0.09), (91.93, 0.08), (91.94, 0.28),
                                         (88.48, 1.06), (87.62, 1.25)])),
    "rmsprop": dict(zip(MNIST_FACTORS, [(91.53, 0.04), (92.34, 0.18), (89.77, 1.69),
                                        (88.90, 1.87), (88.71, 1.01)])),
    "adadelta": {f: (91.46, 0.35) for f in MNIST_FACTORS},
}

# Table 2: ExpTest over alpha x beta, MNIST test accuracy (%).
ALPHA_BETA = {
    (0.1, 0.05): (92.11, 0.06), (0.1, 0.1): (92.11, 0.10), (0.1, 0.33): (92.26, 0.14),
    (0.05, 0.05): (92.06, 0.07), (0.05, 0.1): (92.08, 0.11), (0.05, 0.33): (92.30, 0.07),
    (0.01, 0.05): (92.05, 0.06), (0.01, 0.1): (92.06, 0.11), (0.01, 0.33): (92.25, 0.12),
}

# Batch-size study (figure 2; the stored per-batch-size results), test acc (%).
BATCH_SIZE = {32: 92.30, 512: 91.63, 2048: 90.58}

# Table 3: California housing, test MSE, rate f * eta_max.
CALIFORNIA_FACTORS = (0.0001, 0.001, 0.01, 0.1, 1.0)
CALIFORNIA = {
    "exptest": {f: (0.2846, 0.0070) for f in CALIFORNIA_FACTORS},
    "adam": dict(zip(CALIFORNIA_FACTORS, [(0.2907, 0.0048), (0.2881, 0.0075),
                                          (0.3094, 0.0190), (0.2990, 0.0208),
                                          (1.3106, 0.0)])),
    "sgd": dict(zip(CALIFORNIA_FACTORS, [(0.7676, 0.0409), (0.4488, 0.0108),
                                         (0.3176, 0.0094), (0.2858, 0.0053),
                                         (2.0047, 1.2023)])),
    "momentum": dict(zip(CALIFORNIA_FACTORS, [(0.4492, 0.0108), (0.3177, 0.0091),
                                              (0.2686, 0.0063), (0.2712, 0.0077),
                                              (1.3106, 0.0)])),
    "rmsprop": dict(zip(CALIFORNIA_FACTORS, [(0.2893, 0.0033), (0.2816, 0.0039),
                                             (0.3566, 0.0386), (0.6217, 0.3453),
                                             (1.5514, 0.0126)])),
    "adadelta": {f: (0.3360, 0.0122) for f in CALIFORNIA_FACTORS},
}

# Table 4: CIFAR-10, modified VGG-16, best test accuracy (%) over 75 epochs.
CIFAR_FACTORS = (0.01, 0.1, 1.0, 10.0, 100.0)
CIFAR10 = {
    "exptest_momentum": {f: (81.52, 0.23) for f in CIFAR_FACTORS},
    "adam": dict(zip(CIFAR_FACTORS, [(73.45, 0.11), (81.51, 0.35), (10.00, 0.00),
                                     (10.00, 0.00), (10.00, 0.00)])),
    "sgd": dict(zip(CIFAR_FACTORS, [(13.58, 0.68), (38.49, 3.24), (75.16, 0.22),
                                    (79.83, 0.48), (40.00, 24.1)])),
    "momentum": dict(zip(CIFAR_FACTORS, [(41.72, 1.38), (75.19, 0.54), (81.42, 0.10),
                                         (79.15, 0.37), (10.00, 0.00)])),
    "rmsprop": dict(zip(CIFAR_FACTORS, [(71.14, 0.70), (79.68, 0.35), (20.40, 4.13),
                                        (10.00, 0.00), (10.00, 0.00)])),
    "adadelta": {f: (79.76, 0.31) for f in CIFAR_FACTORS},
}
