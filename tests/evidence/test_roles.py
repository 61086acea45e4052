"""The verdict roles (volumelab.evidence.roles): registered by the sweep methods, read by the evidence layer."""

from __future__ import annotations

import doctest
import subprocess
import sys

import volumelab.evidence.roles as roles
from volumelab.experiments.methods import ExtraRows, MethodRunner, MethodSpec, register_method, unregister_method
from volumelab.optimizers import GuessCheck


def test_the_module_example_runs():
    assert doctest.testmod(roles).failed == 0


def test_a_method_registers_its_roles_and_its_extra_rows_names_and_unregisters_them():
    spec = MethodSpec(type="toy_sampler", optimizer=GuessCheck, budget="samples", runner=MethodRunner(run=print),
                      role=roles.SAMPLER,
                      extra_rows=(ExtraRows(type="toy_floor", build=print, role=roles.CHANCE,
                                            name=lambda method: f"{method}_floor"),))
    register_method(spec)
    try:
        assert roles.role_of("toy_sampler") == roles.SAMPLER and roles.role_of("toy_floor") == roles.CHANCE
        assert roles.companion("toy_sampler", "toy_sampler", roles.CHANCE) == "toy_sampler_floor"
        assert roles.companion("toy_sampler", "toy_sampler", roles.TRAINER) is None
    finally:
        unregister_method("toy_sampler")
    assert roles.role_of("toy_sampler") == roles.OTHER and roles.role_of("toy_floor") == roles.OTHER
    assert roles.companion("toy_sampler", "toy_sampler", roles.CHANCE) is None


def test_the_built_in_roles_are_there_when_only_the_evidence_layer_is_imported():
    """A fresh process that imports volumelab.evidence alone still reads G&C as the sampler and its prior rows
    as the chance level (the first lookup loads the sweep package's registrations)."""
    code = ("import sys; from volumelab.evidence.roles import role_of, companion; "
            "assert 'volumelab.experiments' not in sys.modules; "
            "print(role_of('gnc'), role_of('gd'), role_of('prior'), companion('gnc', 'gnc', 'chance'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["sampler", "trainer", "chance", "prior"]
