"""The roofline arithmetic, the HLO collective parser and the batch search, by hand.

Every expected number below is worked out in the comments from the chip table's public figures
(seqjepa_jax/accelerators.py), not from the code under test.
"""

from types import SimpleNamespace

import pytest

from seqjepa_jax import accelerators, roofline
from seqjepa_jax.aot import hbm_peak, largest_batch, next_batch

V5E = accelerators.CHIPS["v5e"]


def test_v5e_roofline_by_hand():
    # v5e: 197e12 FLOP/s, 819e9 B/s HBM, 400e9 B/s bidirectional ICI -> 200e9 B/s all-reduce.
    # compute 1.97e12 / 197e12 = 10 ms; memory 4.095e9 / 819e9 = 5 ms -> compute-bound.
    # One 45e6-byte all-reduce over 4 chips: 2 * 3/4 * 45e6 = 67.5e6 B / 200e9 = 0.3375 ms.
    # step = 10 + 0.3375 = 10.3375 ms; 512 sequences x 4 views = 2048 images per step:
    # 2048 / 0.0103375 = 198,113.66 images/s per slice, / 4 = 49,528.42 per chip;
    # MFU = 10 / 10.3375 = 0.967352.
    ar = roofline.Collective("all-reduce", 45_000_000, 4)
    assert roofline.collective_seconds(ar, V5E.all_reduce_bytes_per_s) == pytest.approx(3.375e-4)
    est = roofline.roofline(
        flops_per_device=1.97e12,
        bytes_per_device=4.095e9,
        collective_seconds_per_step=3.375e-4,
        chip=V5E,
        num_devices=4,
        images_per_step=2048,
    )
    assert est.compute_seconds == pytest.approx(0.010)
    assert est.memory_seconds == pytest.approx(0.005)
    assert est.step_seconds == pytest.approx(0.0103375)
    assert est.bound == "compute"
    assert est.images_per_second == pytest.approx(198_113.66, rel=1e-7)
    assert est.images_per_second_per_chip == pytest.approx(49_528.42, rel=1e-6)
    assert est.mfu == pytest.approx(0.967352, rel=1e-6)


def test_memory_bound_step_and_ici_bound_step():
    # v6e: 918e12 FLOP/s, 1638e9 B/s. 9.18e11 flops -> 1 ms; 3.276e9 bytes -> 2 ms: HBM-bound,
    # MFU = 1 / 2 = 0.5 with no collectives.
    v6e = accelerators.CHIPS["v6e"]
    est = roofline.roofline(
        flops_per_device=9.18e11,
        bytes_per_device=3.276e9,
        collective_seconds_per_step=0.0,
        chip=v6e,
        num_devices=8,
        images_per_step=800,
    )
    assert (est.step_seconds, est.bound, est.mfu) == (pytest.approx(0.002), "HBM bandwidth", 0.5)
    assert est.images_per_second_per_chip == pytest.approx(800 / 8 / 0.002)
    slow = roofline.roofline(
        flops_per_device=9.18e11,
        bytes_per_device=0.0,
        collective_seconds_per_step=0.003,
        chip=v6e,
        num_devices=8,
        images_per_step=800,
    )
    assert slow.bound == "ICI" and slow.step_seconds == pytest.approx(0.004)


def test_ring_collective_times_by_hand():
    # 8 chips at 200e9 B/s: all-gather of an 8e6-byte output moves 7/8 * 8e6 = 7e6 B -> 35 us;
    # reduce-scatter with a 1e6-byte shard moves 7 * 1e6 -> 35 us; a permute of 2e6 B -> 10 us.
    bw = V5E.all_reduce_bytes_per_s
    assert roofline.collective_seconds(roofline.Collective("all-gather", 8_000_000, 8), bw) == (
        pytest.approx(35e-6)
    )
    assert roofline.collective_seconds(
        roofline.Collective("reduce-scatter", 1_000_000, 8), bw
    ) == pytest.approx(35e-6)
    assert roofline.collective_seconds(
        roofline.Collective("collective-permute", 2_000_000, 2), bw
    ) == pytest.approx(10e-6)
    assert roofline.collective_seconds(roofline.Collective("all-reduce", 10**9, 1), bw) == 0.0


HLO = """
ENTRY %main {
  %p = f32[1024,512]{1,0} parameter(0)
  %all-reduce.1 = f32[1024,512]{1,0:T(8,128)} all-reduce(%p), channel_id=1, replica_groups=[1,4]<=[4], to_apply=%add
  %all-reduce.7 = (f32[4]{0:T(128)S(1)}, f32[4]{0:T(128)S(1)}) all-reduce(%a, %b), channel_id=3, replica_groups=mesh['axis_0'=4,'axis_1'=2] {'axis_0'}, to_apply=%add
  %all-reduce-start.2 = (f32[64]{0}, bf16[128]{0}) all-reduce-start(%x, %y), channel_id=2, replica_groups={{0,1},{2,3}}, to_apply=%add
  %all-reduce-done.2 = (f32[64]{0}, bf16[128]{0}) all-reduce-done(%all-reduce-start.2)
  %all-gather-start = (f32[8]{0}, f32[32]{0}) all-gather-start(%z), dimensions={0}, replica_groups=[1,4]<=[4]
  %all-gather-done = f32[32]{0} all-gather-done(%all-gather-start)
  ROOT %add.3 = f32[] add(%c, %d)
}
"""  # noqa: E501


def test_collectives_parsed_from_hlo():
    # all-reduce.1: 1024 * 512 * 4 B = 2,097,152 over 4; all-reduce.7: 2 x 4 x 4 B = 32 over the
    # 'axis_0' group of 4; the async pair: 64 * 4 + 128 * 2 = 512 B over {0,1} (2); the
    # all-gather: its done's f32[32] = 128 B over 4. Nothing else is a collective.
    found = roofline.find_collectives(HLO, num_devices=8)
    assert found == [
        roofline.Collective("all-reduce", 2_097_152, 4),
        roofline.Collective("all-reduce", 32, 4),
        roofline.Collective("all-reduce", 512, 2),
        roofline.Collective("all-gather", 128, 4),
    ]
    summary = roofline.summarise_collectives(found, V5E)
    assert summary["all-reduce"]["count"] == 3
    assert summary["all-reduce"]["bytes"] == 2_097_152 + 32 + 512
    # 2 * 3/4 * 2,097,152 + 2 * 3/4 * 32 + 2 * 1/2 * 512 = 3,146,288 B at 200e9 B/s.
    assert summary["all-reduce"]["seconds"] == pytest.approx(3_146_288 / 200e9)


def test_hbm_need_and_phases_by_hand():
    stats = SimpleNamespace(
        argument_size_in_bytes=100,
        output_size_in_bytes=90,
        alias_size_in_bytes=80,
        temp_size_in_bytes=1000,
        generated_code_size_in_bytes=7,
    )
    need = roofline.hbm_need(stats)
    assert need["total"] == 100 + 90 - 80 + 1000 + 7
    # Training 1117 + 30 prefetched = 1147; views 50 + 80 state = 130; eval 900 + 80 - 20 = 960.
    memory = {"train_step": need, "view_maker": {"total": 50}, "eval_features": {"total": 900}}
    assert hbm_peak(memory, state_bytes=80, params_bytes=20, prefetch_bytes=30) == 1147
    memory["eval_features"] = {"total": 2000}
    assert hbm_peak(memory, state_bytes=80, params_bytes=20, prefetch_bytes=30) == 2060


def test_largest_batch_search_on_an_affine_memory():
    # need(b) = 1000 + 30 b bytes against 10,000: the largest fitting batch is 300.
    calls = []

    def measure(batch):
        calls.append(batch)
        used = 1000 + 30 * batch
        return used <= 10_000, used

    best, points = largest_batch(measure, start=64, capacity=10_000, tolerance=0.0)
    assert best == 300
    assert points[300][0] and not points[301][0]
    assert len(calls) <= 5  # 64, 128 (doubling), then the line's 300, and 301 to confirm


def test_next_batch_brackets_without_memory_figures():
    # Failing compiles may not report their need: plain bisection between 8 (fits) and 16.
    assert next_batch({8: (True, None), 16: (False, None)}, 100, 0.0) == 12
    assert next_batch({8: (True, None)}, 100, 0.0) == 16
    assert next_batch({8: (True, None), 9: (False, None)}, 100, 0.0) is None


def test_topology_names_and_hosts():
    v5e16 = accelerators.parse_topology("v5e:4x4")
    assert (v5e16.num_chips, v5e16.num_hosts, v5e16.chips_per_host_bounds) == (16, 4, (2, 2, 1))
    v6e8 = accelerators.parse_topology("v6e:2x4")
    assert (v6e8.num_chips, v6e8.num_hosts, v6e8.chips_per_host_bounds) == (8, 1, (2, 4, 1))
    v5p8 = accelerators.parse_topology("v5p:2x2x1")
    assert (v5p8.num_chips, v5p8.num_hosts) == (4, 1)
    assert accelerators.parse_topology("v5p:2x2x2").num_hosts == 2
    h100 = accelerators.parse_topology("h100:8")
    assert (h100.num_chips, h100.num_hosts, h100.chip.platform) == (8, 1, "cuda")
    with pytest.raises(ValueError, match="GPUs are a count of GPUs on one host"):
        accelerators.parse_topology("h100:2x4")
    with pytest.raises(ValueError, match="TPU slices are a chip grid"):
        accelerators.parse_topology("v5e:4")
    with pytest.raises(ValueError, match="unknown chip 'v9'.*v5e, v5p, v6e"):
        accelerators.parse_topology("v9:2x2")
    with pytest.raises(ValueError, match="CHIP:AxB"):
        accelerators.parse_topology("v5e-4")
