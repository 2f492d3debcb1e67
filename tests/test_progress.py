"""The terminal lines of a chain: one per campaign, and no 'next' after the last one."""

import io

from selfregress.progress import Progress


def test_the_last_campaign_line_announces_no_next_campaign():
    stream = io.StringIO()
    progress = Progress(2, stream=stream)
    progress.campaign_done(0, [0.1, 0.3, 0.2], "rollforward_peak")
    progress.campaign_done(1, [0.3, 0.25], "rollforward_peak")
    first, last = stream.getvalue().splitlines()
    assert first.startswith("campaign 1/2: pass@1 0.100 -> peak 0.300 (step 1) -> end 0.200; next: rollforward_peak  [")
    assert last.startswith("campaign 2/2: pass@1 0.300 -> peak 0.300 (step 0) -> end 0.250  [")
