"""Scenario files (cmasim.scenario): strict validation with file- and key-naming errors, layout rules."""

from __future__ import annotations

import pytest

from cmasim import scenario as scn
from cmasim.scenario import ScenarioError, load_scenario, load_scenario_text

MIB = 1 << 20
GIB = 1 << 30


def err(text: str, source: str = "my.toml") -> str:
    with pytest.raises(ScenarioError) as ei:
        load_scenario_text(text, source)
    msg = str(ei.value)
    assert msg.startswith(f"{source}: "), msg
    return msg


@pytest.mark.parametrize("text,key,problem", [
    ('[machine]\nmemroy = "1GiB"\n', "machine.memroy", "unknown key"),
    ('colour = "red"\n', "colour", "unknown key"),
    ('[workload.churn]\nevnts = 5\n', "workload.churn.evnts", "unknown key"),
    ('[machine]\ncpus = "two"\n', "machine.cpus", "valid integer"),
    ('[machine]\ncpus = 2.0\n', "machine.cpus", "valid integer"),
    ('[machine]\ncpus = 0\n', "machine.cpus", "greater than or equal to 1"),
    ('[machine]\nthp = "yes"\n', "machine.thp", "valid boolean"),
    ('seed = "1"\n', "seed", "valid integer"),
    ('[machine]\nmemory = true\n', "machine.memory", "boolean"),
    ('[machine]\nmemory = "lots"\n', "machine.memory", "cannot read 'lots' as a size"),
    ('[machine]\nmemory = -5\n', "machine.memory", "negative"),
    ('[workload.churn]\nevents = 0\n', "workload.churn.events", "greater than 0"),
    ('[workload.churn]\ntarget_usage = 1.5\n', "workload.churn.target_usage", "less than 1"),
    ('[workload.churn]\norder0 = 0.9\norder1_3 = 0.2\n', "workload.churn", "order0 + order1_3 must not exceed 1"),
    ('[[cma]]\nname = "x"\n', "cma.0.size", "Field required"),
])
def test_validation_errors_name_file_and_key(text, key, problem):
    msg = err(text)
    assert f"my.toml: {key}: " in msg
    assert problem in msg


@pytest.mark.parametrize("memory", ['"3MiB"', '"1025MiB"', "1000", '"0"'])
def test_memory_must_be_a_multiple_of_a_pageblock(memory):
    msg = err(f"[machine]\nmemory = {memory}\n")
    assert "machine.memory" in msg and "multiple of a pageblock (2 MiB)" in msg


def test_zone_sizes_must_be_pageblock_multiples_and_add_up():
    msg = err('[machine]\n[machine.zones]\nDMA32 = "1GiB"\nNormal = "3MiB"\n')
    assert "machine.zones.Normal" in msg and "multiple of a pageblock" in msg
    msg = err('[machine]\nmemory = "2GiB"\n[machine.zones]\nDMA32 = "1GiB"\n')
    assert "machine.memory" in msg and "differs from the sum of machine.zones" in msg
    msg = err('[machine]\n[machine.zones]\nHighmem = "64MiB"\n')
    assert "Highmem" in msg and "unknown zone" in msg


def test_cma_larger_than_normal_zone():
    msg = err('[machine]\nmemory = "3136MiB"\n[[cma]]\nsize = "128MiB"\n')
    assert "cma[0]" in msg and "does not fit in zone Normal" in msg


def test_cma_larger_than_a_dma32_only_machine_is_refused():
    msg = err('[machine]\nmemory = "64MiB"\n[[cma]]\nsize = "128MiB"\n')
    assert "cma[0]" in msg


def test_cma_larger_than_a_dma32_only_machine_says_why():
    msg = err('[machine]\nmemory = "64MiB"\n[[cma]]\nsize = "128MiB"\n')
    assert "does not fit" in msg and "-" not in msg.split("cma[0]")[1]


@pytest.mark.parametrize("text,problem", [
    ('[[cma]]\nsize = "3MiB"\n', "cma[0].size"),
    ('[[cma]]\nsize = "8MiB"\nbase = "5MiB"\n', "cma[0].base"),
    ('[machine]\nmemory = "64MiB"\n[[cma]]\nsize = "8MiB"\nbase = "1GiB"\n', "outside memory"),
    ('[[cma]]\nsize = "8MiB"\nbase = "64MiB"\n[[cma]]\nsize = "8MiB"\nbase = "66MiB"\n', "overlaps"),
    ('[machine]\nmemory = "64MiB"\n[[cma]]\nsize = "8MiB"\nbase = "60MiB"\n', "does not fit"),
])
def test_bad_cma_areas(text, problem):
    assert problem in err(text)


def test_malformed_toml():
    msg = err('[machine\nmemory = "1GiB"\n')
    assert "not valid TOML" in msg and "line 1" in msg


def test_missing_file_and_unreadable_file(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(ScenarioError, match=r"nope\.toml: no such file, and not a built-in scenario"):
        load_scenario(str(missing))
    with pytest.raises(ScenarioError, match=r"dir\.toml: cannot read"):
        (tmp_path / "dir.toml").mkdir()
        load_scenario(str(tmp_path / "dir.toml"))


def test_non_utf8_file_is_a_scenario_error(tmp_path):
    p = tmp_path / "binary.toml"
    p.write_bytes(b"\xff\xfe\x00[machine]\n")
    with pytest.raises(ScenarioError, match="binary.toml"):
        load_scenario(str(p))


# --- valid scenarios -----------------------------------------------------------------------------------
def test_builtin_default_scenario():
    sc = load_scenario("default")
    assert sc.name == "default" and sc.description
    assert sc.machine.memory == 4 * GIB and sc.machine.cpus == 2
    assert scn.zone_layout(sc.machine) == [("DMA32", 786432), ("Normal", 262144)]
    # CMA goes to the start of Normal when there is memory above 4 GiB (cma_declare_contiguous_nid)
    assert scn.place_cma(scn.zone_layout(sc.machine), sc.cma) == [("reserved", 786432, 65536, 0)]
    assert sc.workload.churn.events == 2_000_000


def test_file_name_becomes_scenario_name(tmp_path):
    p = tmp_path / "my-case.toml"
    p.write_text('[machine]\nmemory = "64MiB"\n[workload]\nduration_s = 0.1\n')  # a length, no churn
    sc = load_scenario(str(p))
    assert sc.name == "my-case"
    assert sc.workload.churn is None


def test_cma_placement_without_normal_is_top_down():
    sc = load_scenario_text('[machine]\nmemory = "64MiB"\n[[cma]]\nsize = "8MiB"\n[[cma]]\nname="b"\nsize="4MiB"\n'
                            '[workload]\nduration_s = 1\n', "x.toml")
    zones = scn.zone_layout(sc.machine)
    assert zones == [("DMA32", 16384)]
    assert scn.place_cma(zones, sc.cma) == [("reserved", 16384 - 2048, 2048, 0), ("b", 16384 - 3072, 1024, 0)]


def test_explicit_zones_are_sorted_in_kernel_order():
    sc = load_scenario_text('[machine.zones]\nnormal = "64MiB"\ndma = "16MiB"\nDMA32 = "32MiB"\n'
                            '[workload]\nduration_s = 1\n', "z.toml")
    assert scn.zone_layout(sc.machine) == [("DMA", 4096), ("DMA32", 8192), ("Normal", 16384)]


@pytest.mark.parametrize("text,size", [("4GiB", 4 * GIB), ("512M", 512 * MIB), (" 2 MiB ", 2 * MIB), (4096, 4096),
                                       ("1t", 1 << 40), ("7", 7)])
def test_parse_size(text, size):
    assert scn.parse_size(text) == size
