"""The fit + serving-state memory bench (issue 16): rows with every column, peaks that only grow."""
import pytest

from recsys_pref.bench.serving_memory import COLUMNS, ServingMemoryConfig, measure_size, serving_memory_rows


def test_a_measured_size_has_every_column_and_monotonic_peaks():
    row = measure_size(300, 60, ServingMemoryConfig(persona={"als_iterations": 1, "n_bases": 4, "embedding_dim": 4},
                                                    recommend_users=20))
    assert set(COLUMNS) <= set(row) and row["users"] == 300 and row["interactions"] >= 300 * 5
    peaks = [row[name] for name in ("peak_data_mib", "peak_fit_mib", "peak_serving_mib", "peak_recommend_mib")]
    assert peaks == sorted(peaks) and peaks[0] > 0


@pytest.mark.integration
def test_each_size_runs_in_a_fresh_process():
    rows = serving_memory_rows(ServingMemoryConfig.quick())
    assert len(rows) == 1 and "error" not in rows[0] and rows[0]["users"] == 2000
