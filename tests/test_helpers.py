"""The suite's own tools: the frame tolerance of float-path comparisons, the data folder's message."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import DATA, missing_data
from tests.helpers import assert_frames_close


def test_frames_close_allows_rare_one_step_differences_only():
    want = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    got = want.copy()
    assert_frames_close(got, want)
    got[3, 4, 1] += 1  # one value on the other side of a rounding boundary
    assert_frames_close(got, want)
    with pytest.raises(AssertionError, match="steps apart"):
        bad = want.copy()
        bad[0, 0, 0] += 2
        assert_frames_close(bad, want)
    with pytest.raises(AssertionError, match="PSNR"):
        assert_frames_close(want + 1, want)  # every pixel one step off: 48.1 dB, not rounding noise
    with pytest.raises(AssertionError):
        assert_frames_close(got.astype(np.uint16), want)
    wide = np.zeros((4, 4, 3), np.uint16)
    assert_frames_close(wide + np.eye(4, dtype=np.uint16)[..., None], wide)  # 1 step of 65535


def test_missing_data_folder_is_one_line_naming_where_and_adasr_data(tmp_path):
    assert missing_data(DATA, False) is None or not DATA.is_dir()
    for from_env in (False, True):
        why = missing_data(tmp_path, from_env)
        assert why and "\n" not in why and str(tmp_path) in why and "ADASR_DATA" in why
    assert "../shared/data" in missing_data(tmp_path, False)
