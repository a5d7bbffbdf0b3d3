"""Scenarios: whole systems compared on one grid, beyond image reconstruction.

- :mod:`~diffcomm.scenarios.machine`: the machine-centric scenario (the receiver runs a task, here
  Fashion-MNIST classification): reconstruct-then-classify with registered receivers, task-oriented
  JSCC (:mod:`~diffcomm.scenarios.taskjscc`), semantic-only label transmission
  (:mod:`~diffcomm.scenarios.label_link`), and a diffusion prior as a generative classifier
  (:mod:`~diffcomm.scenarios.generative`); accuracy against channel uses, SNR and receiver compute
  (:mod:`~diffcomm.scenarios.efficiency`).
"""
