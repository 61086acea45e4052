"""Every study's current rule is dated in volumelab/studies/rule_history.json (the date its digest was recorded)."""

from __future__ import annotations

import json

from volumelab.evidence import registered_studies, rule_changed, rule_history


def test_every_study_rule_is_dated_in_the_history():
    history = rule_history()
    undated = {name: study.digest() for name, study in registered_studies().items() if rule_changed(study) is None}
    entries = {name: {"digest": digest, "date": "YYYY-MM-DD", "note": "what changed and why"}
               for name, digest in undated.items()}
    assert not undated, ("a study's rule changed (or is new): append an entry to its list in "
                         "src/volumelab/studies/rule_history.json, oldest first, e.g.\n"
                         + json.dumps(entries, indent=1))
    for name, entries in history.items():
        dates = [entry["date"] for entry in entries]
        assert dates == sorted(dates), f"{name}: entries must be oldest first"
        assert all(entry.get("note") for entry in entries), f"{name}: every entry says what changed"
