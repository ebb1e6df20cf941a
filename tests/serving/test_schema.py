"""ObservationSchema: built from an embodiment spec; checks name the field, what was expected and what came."""

from __future__ import annotations

import numpy as np
import pytest
from serving_helpers import FRONT, STATE, WRIST, ToySpec, make_obs

from lbva.serving.images import resize_with_pad
from lbva.serving.protocol import RequestError
from lbva.serving.schema import ObservationSchema


def test_from_embodiment_reads_cameras_state_and_chunk():
    schema = ObservationSchema.from_embodiment(ToySpec())
    assert schema.embodiment == "toy-arm"
    assert schema.describe() == {
        FRONT: {"shape": [6, 8, 3], "dtype": "uint8"},
        WRIST: {"shape": [4, 4, 3], "dtype": "uint8"},
        STATE: {"shape": [5], "dtype": "float32"},
    }
    assert schema.action_shape == (2 * 3, 4)  # chunk_frames * actions_per_frame, native_action_dim
    assert schema.reply_rows(first_of_episode=True) == 3 and schema.reply_rows(first_of_episode=False) == 6
    assert schema.image_keys == (FRONT, WRIST) and schema.state_key == STATE


def test_stateless_embodiment_has_no_state_key():
    schema = ObservationSchema.from_embodiment(ToySpec(native_state_dim=0))
    assert STATE not in schema.arrays and schema.state_key is None


def test_float_state_is_cast_to_float32_and_images_pass_unchanged():
    schema = ObservationSchema.from_embodiment(ToySpec())
    obs = make_obs(3)
    obs[STATE] = obs[STATE].astype(np.float64)
    out = schema.check_observation(obs)
    assert out[STATE].dtype == np.float32
    np.testing.assert_array_equal(out[STATE], obs[STATE].astype(np.float32))
    assert out[FRONT] is obs[FRONT] and out["prompt"] == "pick the cube"


def test_float64_overflowing_float32_is_refused():
    schema = ObservationSchema.from_embodiment(ToySpec())
    obs = make_obs()
    obs[STATE] = np.full(5, 1e300)
    with pytest.raises(RequestError, match="NaN or infinite") as e:
        schema.check_observation(obs)
    assert e.value.field == STATE


def test_feedback_frames_accept_a_shared_time_axis_only():
    schema = ObservationSchema.from_embodiment(ToySpec())
    frames = {FRONT: np.zeros((3, 6, 8, 3), np.uint8), WRIST: np.zeros((3, 4, 4, 3), np.uint8)}
    assert schema.check_frames(frames)[FRONT].shape == (3, 6, 8, 3)
    frames[WRIST] = np.zeros((2, 4, 4, 3), np.uint8)
    with pytest.raises(RequestError, match="same leading time axis"):
        schema.check_frames(frames)


# ------------------------------------------------------------------ other conventions' keys
def _libero_openpi_obs(size=224, seed=0):
    rng = np.random.default_rng(seed)
    return {"observation/image": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
            "observation/wrist_image": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
            "observation/state": rng.standard_normal(8),  # float64, as openpi's example concatenates it
            "prompt": "put the bowl on the plate"}


def test_openpi_libero_keys_map_onto_the_embodiment_keys():
    from lbva.embodiment import get_embodiment

    schema = ObservationSchema.from_embodiment(get_embodiment("libero-franka"))
    obs = _libero_openpi_obs()
    out = schema.check_observation(obs)
    assert sorted(out) == ["observation.images.image", "observation.images.image2", "observation.state", "prompt"]
    for alias, key in (("observation/image", "observation.images.image"), ("observation/wrist_image", "observation.images.image2")):
        assert out[key].shape == (256, 256, 3) and out[key].dtype == np.uint8
        np.testing.assert_array_equal(out[key], resize_with_pad(obs[alias], 256, 256))
    np.testing.assert_array_equal(out["observation.state"], obs["observation/state"].astype(np.float32))
    meta = schema.describe_aliases()
    assert meta["observation/image"]["for"] == "observation.images.image" and meta["observation/image"]["resized_to"] == [256, 256]
    assert meta["observation/state"] == {"for": "observation.state", "convention": "openpi-libero", "shape": [8],
                                         "dtype": "float32", "dims": list(get_embodiment("libero-franka").state_names),
                                         "fills_state": True}


def test_openpi_droid_keys_reach_franka_without_a_state():
    from lbva.embodiment import get_embodiment

    schema = ObservationSchema.from_embodiment(get_embodiment("franka"))
    rng = np.random.default_rng(1)
    obs = {"observation/exterior_image_1_left": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
           "observation/wrist_image_left": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
           "observation/joint_position": rng.standard_normal(7), "observation/gripper_position": np.array([0.3]),
           "prompt": "open the drawer"}
    out = schema.check_observation(obs)
    # DROID sends no end-effector pose, so franka's state cannot be formed: the policy gets the cameras only
    assert sorted(out) == ["observation.images.front", "observation.images.wrist", "prompt"]
    front = out["observation.images.front"]
    assert front.shape == (256, 320, 3)
    # 224x224 into 256x320: scaled to 256x256 and centred, 32 black columns either side
    assert not front[:, :32].any() and not front[:, -32:].any()
    bad = dict(obs, **{"observation/joint_position": np.zeros(6)})
    with pytest.raises(RequestError, match=r"\(7,\)") as e:
        schema.check_observation(bad)
    assert e.value.field == "observation/joint_position"
    incomplete = {k: v for k, v in obs.items() if k != "observation/gripper_position"}
    with pytest.raises(RequestError, match="convention 'openpi-droid' sends") as e:
        schema.check_observation(incomplete)
    assert e.value.field == "observation/gripper_position"


def test_resize_with_pad_geometry():
    img = np.full((100, 200, 3), 255, np.uint8)  # 1:2 -> fits 64 wide as 32 tall, centred in 64x64
    out = resize_with_pad(img, 64, 64)
    rows = np.nonzero(out[:, :, 0].any(axis=1))[0]
    assert out.shape == (64, 64, 3) and (rows.min(), rows.max()) == (16, 47) and out[16:48].min() == 255
    assert resize_with_pad(img, 100, 200) is img  # already the size: untouched


@pytest.mark.parametrize("change, field, match", [
    ({"observation.images.image": np.zeros((256, 256, 3), np.uint8)}, "observation.images.image", "arrived twice"),
    ({"observation.state": np.zeros(8, np.float32)}, "observation.state", "more than one convention"),
    ({"observation/image": np.zeros((224, 224, 3), np.float32)}, "observation/image", "uint8"),
    ({"observation/image": np.zeros((224, 224), np.uint8)}, "observation/image", r"\(h, w, 3\) of any size"),
    ({"observation/state": None}, "observation.state", "'observation.state' or openpi-libero"),
    ({"observation/wrist_image": None}, "observation.images.image2", "'observation.images.image2' or 'observation/wrist_image'"),
    ({"observation/depth": np.zeros((4, 4), np.uint8)}, "observation/depth", "observation/wrist_image"),
])
def test_alias_mistakes_name_the_key(change, field, match):
    from lbva.embodiment import get_embodiment

    schema = ObservationSchema.from_embodiment(get_embodiment("libero-franka"))
    obs = _libero_openpi_obs()
    for key, value in change.items():
        if value is None:
            del obs[key]
        else:
            obs[key] = value
    with pytest.raises(RequestError, match=match) as e:
        schema.check_observation(obs)
    assert e.value.field == field
