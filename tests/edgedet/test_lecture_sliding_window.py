"""The lecture's sliding-window count (edgedet.lecture.sliding_window): the closed form against the lecture's double
sum and against enumerating every window of small images, and the 800x600 figure the lecture gets wrong."""
import pytest

from edgedet.lecture.sliding_window import enumerate_windows, window_count, window_count_by_size


@pytest.mark.parametrize("height, width", [(0, 0), (1, 1), (1, 5), (2, 3), (4, 4), (5, 7), (6, 3)])
def test_closed_form_equals_brute_force(height, width):
    windows = list(enumerate_windows(height, width))
    assert len(set(windows)) == len(windows)  # each window once
    assert all(0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height for x1, y1, x2, y2 in windows)
    assert window_count(height, width) == len(windows) == window_count_by_size(height, width)


def test_two_by_two_by_hand():
    # four 1x1, two 1x2, two 2x1 and one 2x2 window
    assert window_count(2, 2) == 9


def test_800x600_is_58_billion_not_57_million():
    count = window_count(600, 800)
    assert count == 180_300 * 320_400 == 57_768_120_000
    assert f"{count:.2e}" == "5.78e+10"
    assert count // 57_000_000 > 1000  # the lecture's "57 million" is three orders of magnitude short
    assert window_count(800, 600) == count


def test_closed_form_equals_the_lecture_sum_on_a_larger_image():
    assert window_count(60, 80) == window_count_by_size(60, 80)


def test_rejects_a_negative_size():
    with pytest.raises(ValueError):
        window_count(-1, 4)
