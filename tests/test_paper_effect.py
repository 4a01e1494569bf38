"""The paper's effect on the embedded data, as a test: three base seeds, independent pairs, the
qualitative claims of Lubana et al. with margins a broken implementation would miss (CBFT without its
barrier and invariance terms, or with the barrier loss's gradient cut, fails the barrier claims).
The recipe, the measurements and the claims with their calibration: tests/paper_effect.py."""
from __future__ import annotations

import pytest

from paper_effect import SEEDS, failed_claims, means


# about 40 s on one core: six base models, twelve fine-tunings, their paths, measured by a background
# process the session starts first (conftest.paper_effect_rows), in the CPU time the Ray tests leave idle
@pytest.mark.slow
def test_the_papers_claims_hold_on_the_embedded_data(paper_effect_rows):
    rows = paper_effect_rows
    assert len(rows) == len(SEEDS) >= 3
    assert failed_claims(rows) == [], means(rows)
