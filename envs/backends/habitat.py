"""Optional habitat-sim renderer with the same interface as ``envs.renderer.Renderer``.

Used only where ``import habitat_sim`` works. habitat-sim is not on PyPI for
Linux; install it with conda (``conda install habitat-sim -c conda-forge -c aihabitat``,
add ``headless`` for machines without a display) or build it from source.

How a spatialnav Scene becomes a habitat scene:
    * Frames. spatialnav is z-up with the agent looking along +x at yaw 0;
      habitat is y-up with the agent looking along -z. A world point maps as
      (x, y, z) -> (x, z, -y) (a proper rotation, det = +1), and our yaw maps to
      a rotation of theta = yaw - pi/2 about habitat's +y: at yaw = pi/2 (our +y)
      the agent looks along habitat's -z, which is our +y.
    * Geometry. The scene's triangles are grouped by (instance, semantic class);
      each group is exported as a flat-coloured .glb (unshared vertices so every
      triangle keeps its own colour) and added as a static rigid object whose
      ``semantic_id`` is the group's index + 1. The semantic sensor's per-pixel id
      then maps back to our instance id and semantic class through two tables.
      The stage is empty (``scene_id = "NONE"``).
    * Sensors. RGB, depth and semantic camera sensors at ``sensor_height`` above
      the agent, hfov ``hfov_deg``; pitch is applied by rotating the sensor nodes
      about their +x axis (positive looks up, as in ``Renderer``). habitat's depth
      sensor already returns z-depth in metres; values beyond ``max_depth`` become 0.

This adapter is written against habitat-sim's documented Python API (0.2.x/0.3.x);
it cannot be exercised on machines where habitat-sim does not install.

Status: NOT RUN AGAINST HABITAT-SIM. What is tested without it (tests/test_habitat_backend.py,
with habitat_sim/magnum stubbed only to import this module): the frame map ``to_habitat``, the
agent rotation ``yaw_to_habitat_rotation`` against the open3d renderer's forward/right/up, and
the exported groups with their semantic-id tables. ``HabitatRenderer`` itself is untested.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

try:
    import habitat_sim
    import magnum as mn
    from habitat_sim.utils.common import quat_from_angle_axis
except ImportError as err:  # the only path on pip-only Linux machines
    raise ImportError(
        "the habitat backend needs habitat-sim, which is not installed (or failed to import: "
        f"{err}). habitat-sim is not on PyPI for Linux; install it with "
        "`conda install habitat-sim headless -c conda-forge -c aihabitat` or build it from "
        "https://github.com/facebookresearch/habitat-sim, or use backend='open3d' (the default)."
    ) from err

from envs.renderer import _as_outputs, _as_poses
from envs.scene import Scene

_SENSORS = {"rgb": "COLOR", "depth": "DEPTH", "semantic": "SEMANTIC"}


def to_habitat(xyz: np.ndarray) -> np.ndarray:
    """spatialnav z-up (x, y, z) -> habitat y-up (x, z, -y)."""
    xyz = np.asarray(xyz, np.float64)
    return np.stack([xyz[..., 0], xyz[..., 2], -xyz[..., 1]], -1)


def yaw_to_habitat_rotation(yaw: float):
    """Agent rotation (quaternion) in habitat for our yaw: angle yaw - pi/2 about +y."""
    return quat_from_angle_axis(float(yaw) - np.pi / 2, np.array([0.0, 1.0, 0.0]))


def _export_groups(scene: Scene, folder: Path) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """Write one flat-coloured .glb + object config per (instance, semantic) group."""
    import trimesh

    keys = np.stack([scene.tri_instance, scene.tri_semantic], 1)
    groups, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    configs = []
    verts_h = to_habitat(scene.vertices).astype(np.float32)
    for g in range(len(groups)):
        tri = scene.triangles[inverse == g]
        v = verts_h[tri.reshape(-1)]  # unshared vertices: one colour per triangle survives export
        colors = np.repeat(scene.tri_color[inverse == g], 3, axis=0)
        mesh = trimesh.Trimesh(v, np.arange(len(v)).reshape(-1, 3), process=False)
        mesh.visual.vertex_colors = np.c_[colors, np.full(len(colors), 255, np.uint8)]
        glb = folder / f"group_{g:05d}.glb"
        mesh.export(glb, file_type="glb")
        cfg = folder / f"group_{g:05d}.object_config.json"
        cfg.write_text(json.dumps({
            "render_asset": glb.name,
            "collision_asset": glb.name,
            "shader_type": "flat",  # colours are already shaded by MeshBuilder
            "force_flat_shading": True,
            "COM": [0.0, 0.0, 0.0],  # keep vertices in world coordinates (no re-centring)
        }))
        configs.append(cfg)
    # semantic_id k (>= 1) -> our instance id / semantic class; 0 = nothing hit.
    inst_of = np.concatenate([[0], groups[:, 0]]).astype(np.int32)
    sem_of = np.concatenate([[0], groups[:, 1]]).astype(np.int32)
    return configs, inst_of, sem_of


class HabitatRenderer:
    """habitat-sim rendering of a Scene; same ``render`` contract as ``envs.renderer.Renderer``."""

    def __init__(self, scene: Scene, width: int = 128, height: int = 128, hfov_deg: float = 79.0,
                 sensor_height: float = 0.88, max_depth: float = 10.0, threads: int | None = None,
                 background: Sequence[int] = (0, 0, 0), gpu_device_id: int = 0) -> None:
        del threads  # habitat renders on the GPU (or EGL/OSMesa); no CPU thread knob
        self.scene = scene
        self.width, self.height = int(width), int(height)
        self.hfov_deg, self.sensor_height = float(hfov_deg), float(sensor_height)
        self.max_depth = float(max_depth)
        self._background = np.asarray(background, np.uint8).reshape(3)
        self._tmp = tempfile.TemporaryDirectory(prefix="spatialnav_habitat_")
        configs, self._inst_of, self._sem_of = _export_groups(scene, Path(self._tmp.name))

        sim_cfg = habitat_sim.SimulatorConfiguration()
        sim_cfg.scene_id = "NONE"
        sim_cfg.gpu_device_id = gpu_device_id
        sim_cfg.enable_physics = False
        specs = []
        for uuid, kind in _SENSORS.items():
            spec = habitat_sim.CameraSensorSpec()
            spec.uuid = uuid
            spec.sensor_type = getattr(habitat_sim.SensorType, kind)
            spec.resolution = [self.height, self.width]
            spec.position = [0.0, self.sensor_height, 0.0]
            spec.hfov = self.hfov_deg
            specs.append(spec)
        agent_cfg = habitat_sim.agent.AgentConfiguration()
        agent_cfg.sensor_specifications = specs
        self.sim = habitat_sim.Simulator(habitat_sim.Configuration(sim_cfg, [agent_cfg]))

        tmpl = self.sim.get_object_template_manager()
        rom = self.sim.get_rigid_object_manager()
        for k, cfg in enumerate(configs, start=1):
            template_id = tmpl.load_configs(str(cfg))[0]
            obj = rom.add_object_by_template_id(template_id)
            obj.motion_type = habitat_sim.physics.MotionType.STATIC
            obj.semantic_id = k
        self.agent = self.sim.initialize_agent(0)

    def _sensor_node(self, uuid: str):
        suite = getattr(self.agent.scene_node, "node_sensor_suite", None)
        sensor = suite.get(uuid) if suite is not None else self.agent._sensors[uuid]
        return sensor.node

    def render(self, poses, pitch=None, outputs: Sequence[str] = ("rgb", "depth"),
               count_instance: int | None = None) -> dict[str, np.ndarray]:
        """Same contract as ``Renderer.render``; one habitat draw per pose."""
        outputs = _as_outputs(outputs)
        if count_instance is not None and "instance" not in outputs:
            out = self.render(poses, pitch, tuple(outputs) + ("instance",), count_instance)
            del out["instance"]
            return out
        poses = _as_poses(poses)
        n = len(poses)
        pit = np.zeros(n) if pitch is None else np.broadcast_to(np.asarray(pitch, float).reshape(-1), (n,))
        res = {k: [] for k in outputs}
        floor = float(self.scene.floor_z)
        for (x, y, yaw), p in zip(poses, pit):
            state = habitat_sim.AgentState()
            state.position = to_habitat(np.array([x, y, floor]))
            state.rotation = yaw_to_habitat_rotation(yaw)
            self.agent.set_state(state, reset_sensors=True)
            tilt = mn.Quaternion.rotation(mn.Rad(float(p)), mn.Vector3.x_axis())
            for uuid in _SENSORS:
                self._sensor_node(uuid).rotation = tilt
            obs = self.sim.get_sensor_observations()
            sem = np.asarray(obs["semantic"], np.int64)
            sem = np.where(sem < len(self._inst_of), sem, 0)
            if "rgb" in outputs:
                rgb = np.asarray(obs["rgb"])[..., :3].astype(np.uint8)
                rgb[sem == 0] = self._background
                res["rgb"].append(rgb)
            if "depth" in outputs:
                d = np.asarray(obs["depth"], np.float32)
                res["depth"].append(np.where((d > 0) & (d <= self.max_depth), d, np.float32(0)))
            if "instance" in outputs:
                res["instance"].append(self._inst_of[sem])
            if "semantic" in outputs:
                res["semantic"].append(self._sem_of[sem])
        out = {k: np.stack(v) for k, v in res.items()}
        if count_instance is not None:
            hits = out["instance"].reshape(n, -1) == int(count_instance)
            out["instance_pixels"] = np.count_nonzero(hits, axis=1).astype(np.int64)
        return out

    def close(self) -> None:
        self.sim.close()
        self._tmp.cleanup()
