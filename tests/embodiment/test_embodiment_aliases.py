"""Other conventions' keys on an embodiment: camera aliases and state conventions, declared once on the spec."""

import numpy as np
import pytest

from lbva.embodiment import CameraSpec, EmbodimentSpec, FieldSpec, StateAlias, get_embodiment


def _spec(cameras=None, state_aliases=()):
    return EmbodimentSpec(
        name="two-cam",
        cameras=cameras or (CameraSpec("observation.images.front", 8, 8, aliases=("cam/front",)),
                            CameraSpec("observation.images.wrist", 8, 8)),
        camera_layout="width_concat",
        action_fields=(FieldSpec("joints", "raw", (14, 15)),),
        state_fields=(FieldSpec("joints", "raw", (14, 15), names=("j0", "j1")),
                      FieldSpec("gripper", "gripper", (28,), names=("grip",))),
        control_hz=10.0, actions_per_frame=2, chunk_frames=2,
        action_low=-np.ones(2, np.float32), action_high=np.ones(2, np.float32),
        state_aliases=state_aliases,
    )


def test_openpi_conventions_are_declared_on_the_builtins():
    libero = get_embodiment("libero-franka")
    assert libero.camera_for_key("observation/image").key == "observation.images.image"  # agentview
    assert libero.camera_for_key("observation/wrist_image").key == "observation.images.image2"  # eye in hand
    (conv,) = libero.state_aliases
    assert conv.parts == (("observation/state", libero.state_names),) and conv.covers(libero.state_names)
    franka = get_embodiment("franka")
    assert franka.camera_for_key("observation/exterior_image_1_left").key == "observation.images.front"
    assert franka.camera_for_key("observation/wrist_image_left").key == "observation.images.wrist"
    droid = franka.state_alias_for_key("observation/gripper_position")
    assert droid.sizes() == {"observation/joint_position": 7, "observation/gripper_position": 1}
    assert not droid.covers(franka.state_names)  # DROID sends no end-effector pose
    assert franka.camera_for_key("observation.images.front").key == "observation.images.front"
    assert franka.camera_for_key("observation/image") is None and franka.state_alias_for_key("observation.state") is None
    shown = libero.describe()
    assert shown["cameras"][0]["aliases"] == ["observation/image"]
    assert shown["state_aliases"] == [{"name": "openpi-libero", "parts": {"observation/state": list(libero.state_names)}}]


def test_assemble_puts_each_value_in_its_named_dim():
    conv = StateAlias("split", (("b", ("grip", None)), ("a", ("j1", "j0"))))
    values = {"a": np.array([[1.0, 2.0], [3.0, 4.0]]), "b": np.array([[5.0, 9.0], [6.0, 9.0]])}
    out = conv.assemble(values, ("j0", "j1", "grip"))
    want = np.array([[2.0, 1.0, 5.0], [4.0, 3.0, 6.0]], np.float32)  # written out by hand
    np.testing.assert_array_equal(out, want)
    assert out.dtype == np.float32
    assert conv.assemble(values, ("j0", "j1", "grip", "other")) is None  # a dim nobody sends: no state
    with pytest.raises(ValueError, match=r"\['b'\] missing"):
        conv.assemble({"a": values["a"]}, ("j0", "j1", "grip"))
    with pytest.raises(ValueError, match=r"b: expected \(\.\.\., 2\)"):
        conv.assemble({"a": values["a"], "b": np.zeros(3)}, ("j0", "j1", "grip"))


@pytest.mark.parametrize("kwargs, match", [
    ({"cameras": (CameraSpec("observation.images.front", 8, 8, aliases=("observation.images.wrist",)),
                  CameraSpec("observation.images.wrist", 8, 8))}, "already used by camera observation.images.wrist"),
    ({"state_aliases": (StateAlias("x", (("cam/front", ("j0",)),)),)}, "'cam/front'.*already used by camera"),
    ({"state_aliases": (StateAlias("x", (("s", ("j0", "elbow")),)),)}, r"names \['elbow'\], which are not state dims"),
    ({"state_aliases": (StateAlias("x", (("observation.state", ("j0",)),)),)}, "already used by the state"),
])
def test_clashing_or_unknown_aliases_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _spec(**kwargs)


@pytest.mark.parametrize("make, match", [
    (lambda: CameraSpec("observation.images.front", 8, 8, aliases=("",)), "non-empty strings"),
    (lambda: CameraSpec("observation.images.front", 8, 8, aliases=("prompt",)), "reserved for the instruction"),
    (lambda: StateAlias("x", (("s", ("j0", "j0")),)), "filled twice"),
    (lambda: StateAlias("x", (("s", ()),)), "names no dims"),
    (lambda: StateAlias("x", ()), "at least one"),
    (lambda: StateAlias("x", (("s", ("j0",)), ("s", ("j1",)))), "keys repeat"),
])
def test_malformed_declarations_are_refused(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_a_lone_string_is_one_alias():
    assert CameraSpec("observation.images.front", 8, 8, aliases="cam/front").aliases == ("cam/front",)
