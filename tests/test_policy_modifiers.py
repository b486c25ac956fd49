"""Policy modifiers that change nothing for their base, or are given twice, are refused with a
one-line reason naming the modifier (PolicyModifierError, a ValueError and an UnknownPolicy)."""

import pytest

from cmasim.cli import main
from cmasim.policy import PolicyModifierError, UnknownPolicy, get_policy


@pytest.mark.parametrize("name,mod", [
    ("android+use-cma-first", "use-cma-first"),
    ("android+cma-ratio", "cma-ratio"),
    ("android+cma-balance-wmark-low", "cma-balance-wmark-low"),
    ("android-2020+cma-ratio", "cma-ratio"),
    ("android-6.6+rfc-thp-cma+use-cma-first", "use-cma-first"),
])
def test_balancing_modifiers_change_nothing_on_android(name, mod):
    with pytest.raises(PolicyModifierError) as e:
        get_policy(name)
    msg = str(e.value)
    assert "\n" not in msg and f"+{mod}" in msg and "changes nothing" in msg and "balancing" in msg
    assert isinstance(e.value, ValueError) and isinstance(e.value, UnknownPolicy)


@pytest.mark.parametrize("name,mod", [
    ("linux-6.18+cma-retry+cma-retry", "cma-retry"),
    ("android+cma-retry+pin-pending-migration+cma-retry", "cma-retry"),
])
def test_a_modifier_given_twice_is_refused(name, mod):
    with pytest.raises(PolicyModifierError, match=rf"\+{mod} is given twice"):
        get_policy(name)


def test_a_modifier_already_set_by_an_earlier_one_is_refused():
    with pytest.raises(PolicyModifierError, match=r"\+short-pin-migrates-cma changes nothing: \+gcma-like already"):
        get_policy("linux-6.18+gcma-like+short-pin-migrates-cma")


def test_modifiers_that_change_something_still_apply():
    assert get_policy("linux-6.18+use-cma-first").cma_balance_mode == 1
    assert get_policy("linux-6.18+cma-ratio").cma_balance == (3, 4)
    assert get_policy("android+cma-retry+pin-pending-migration").cma_retry == (5, 100)
    assert get_policy("android-6.6+rfc-thp-cma+cma-retry").nr_pcp_lists == 18


def test_cli_prints_the_one_line_reason(tmp_path, capsys):
    sc = tmp_path / "t.toml"
    sc.write_text('seed = 1\n[machine]\nmemory = "64MiB"\ncpus = 1\n[workload.churn]\nevents = 10\n')
    rc = main(["run", "--scenario", str(sc), "--policy", "android+cma-ratio", "--quiet"])
    _, err = capsys.readouterr()
    assert rc == 2 and "Traceback" not in err
    assert " ".join(err.split()) == ("error: 'android+cma-ratio': +cma-ratio changes nothing on android: "
                                     "no half-free CMA balancing while __GFP_CMA restricts CMA")
