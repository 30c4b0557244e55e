"""Scene completion with Generative Cellular Automata (GCA, cGCA, hGCA).

Voxelisation, transition networks, samplers, infusion training with a replay buffer, the BEV planner,
the latent (unsigned distance field) encoder/decoder, meshing and metrics. Pure numpy/torch: never imports
rclpy.
"""
