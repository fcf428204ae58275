"""The benchmarks' shared code; the experiments are the modules above it.

* `problems`: the training problems (data, model, loss): MNIST logistic
  regression, the California-housing MLP, the teacher-student nets;
* `trainers`: the ways to run arms (`run_arms`: a vmapped, sharded batch of
  whole training runs; `compile_mapped`: runs back to back on one device,
  `run_on_devices` running such programs side by side) and the trainers
  built on them;
* `optimizers`: the compared optimizers, by name; `paper`: the paper's numbers;
* `common`: timing, command lines, result files and tables;
* `plots`: the figures, with ExpTest's decisions in `optax_exptest`'s colours;
* `report`: assembles `benchmarks/RESULTS.md` (`python -m benchmarks report`).
"""
