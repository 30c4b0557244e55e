"""Procedural outdoor street scenes as one labelled triangle mesh.

A scene is a square of ``size_m`` centred on the world origin (world frame: metres, z up). It holds gently
sloped, undulating terrain; a road (straight or gently curved) with lane markings, curbs and sidewalks; and
buildings with facade relief, cars/vans/trucks, street lights, traffic signs, trees, fences and walls.
Every triangle carries a class id (``Scene.labels``, names in ``Scene.class_names``).

Placement keeps objects apart with a 2-D occupancy grid: cars stand on the road, buildings, walls and fences
beyond the sidewalks, poles, signs and trees on the sidewalks (trees also on the terrain). Everything is drawn
from ``np.random.default_rng(seed)``, so a ``(SceneConfig, seed)`` pair gives the same scene every time.

    scene = generate_scene(SceneConfig(), seed=3)
    rays = scene.to_raycasting_scene()
    gt = sample_surface(scene, spacing_m=0.05, seed=0)         # (M, 3) dense surface samples, world frame

Modules (one job each):

- ``classes``: the class names; ``config``: :class:`SceneConfig`; ``model``: :class:`GroundModel`,
  :class:`RoadPolyline`, :class:`SceneObject`, :class:`Scene`.
- ``transforms``, ``footprints``, ``primitives``: rotations, footprint rectangles, mesh primitives and the
  labelled :class:`~gen3d_ros.sim.scene.primitives.MeshBuilder`.
- ``placement``: occupancy grids and the :class:`~gen3d_ros.sim.scene.placement.SceneBuilder` (the scene under
  construction) that every object kind places into.
- one module per kind of thing: ``road`` (ground, road, terrain), ``buildings``, ``vehicles``,
  ``street_furniture`` (street lights, signs), ``vegetation`` (trees), ``barriers`` (walls, fences).
- ``people`` (pedestrians, cyclists), ``warehouse`` (the indoor scene type, ``SceneConfig.kind = "warehouse"``);
  ``vegetation`` also builds porous canopies, hedges, bushes and grass from small leaf clusters, ``vehicles``
  compact cars, pickups, buses and parking lots.
- ``generate``: :func:`generate_scene`, the street recipe; ``surface``: :func:`sample_surface`.

The richer world (``SceneConfig.from_dict({"preset": "rich"})``) switches those kinds on; they are all off in
the default config. ``SceneConfig.exclude_classes`` holds classes out (a training set's held-out classes).

A new object kind (pedestrians, bushes, ...) is a ``place_<kind>(builder)`` in its module (a new one, or the
one of its family: bushes in ``vegetation``), a class name appended in ``classes``, a count in
:class:`SceneConfig` and a call in ``generate`` after the existing kinds, with a random stream of its own spawned
after the existing ones (so existing configs and seeds keep giving the same scenes). A different kind of scene
(indoor) is a recipe of its own next to ``generate``, reusing ``primitives`` and ``placement``.
"""

from gen3d_ros.sim.scene.classes import CLASS_IDS, CLASS_NAMES
from gen3d_ros.sim.scene.config import SceneConfig
from gen3d_ros.sim.scene.generate import generate_scene
from gen3d_ros.sim.scene.model import GroundModel, RoadPolyline, Scene, SceneObject
from gen3d_ros.sim.scene.surface import sample_surface, triangle_areas

__all__ = [
    "CLASS_IDS",
    "CLASS_NAMES",
    "GroundModel",
    "RoadPolyline",
    "Scene",
    "SceneConfig",
    "SceneObject",
    "generate_scene",
    "sample_surface",
    "triangle_areas",
]
