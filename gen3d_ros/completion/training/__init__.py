"""Training of the completion models (GCA, planned GCA, cGCA autoencoder and kernel, the hGCA hierarchy).

Apart from the runtime: nodes and inference never import this package. It may import the data generator
(:mod:`gen3d_ros.sim`). The infusion loop is shared (:mod:`.loop`); each model has its module for its config,
presets, data, evaluation and run outputs.
"""
