"""experiments/hlo_op_counts.py: opcode counting on a hand-written optimised-HLO snippet."""

from __future__ import annotations

from experiment_scripts import load_experiment

HLO = """HloModule jit_train_step, entry_computation_layout={(f32[2,4]{1,0})->f32[4,2]{1,0}}

%fused_c.1 (param_0: f32[2,4]) -> f32[4,2] {
  %param_0 = f32[2,4]{1,0} parameter(0)
  ROOT %transpose.1 = f32[4,2]{1,0} transpose(%param_0), dimensions={1,0}
}

%wrapped_add_computation (a: f32[], b: f32[]) -> f32[] {
  %a = f32[] parameter(0)
  %b = f32[] parameter(1)
  ROOT %add.0 = f32[] add(%a, %b)
}

ENTRY %main.9 (x: f32[2,4]) -> f32[4,2] {
  %x = f32[2,4]{1,0} parameter(0)
  %copy.3 = f32[2,4]{1,0} copy(%x)
  %conv.1 = f32[2,4]{1,0} convolution(%copy.3, %copy.3), dim_labels=b01f_01io->b01f
  %tuple.2 = (f32[2,4]{1,0}, s32[]) tuple(%copy.3, %x)
  ROOT %transpose_copy_fusion.7 = f32[4,2]{1,0} fusion(%conv.1), kind=kLoop, calls=%fused_c.1
}
"""


def test_count_ops_splits_top_level_and_fusion_bodies():
    module = load_experiment("hlo_op_counts")
    counts = module.count_ops(HLO)
    top, fused = counts["top_level"], counts["in_fusions"]
    assert (top["copy"], top["convolution"], top["fusion"], top["tuple"]) == (1, 1, 1, 1)
    assert top["transpose"] == 0 and top["add"] == 0
    assert (fused["transpose"], fused["add"], fused["parameter"]) == (1, 1, 3)
    assert counts["convolutions"] == ["b01f_01io->b01f"]
    assert counts["transpose_fusions"] == 1
    assert module._mib("f32[96,32,32,64]{3,2,1,0}") == 24.0
    assert module._mib("bf16[1024,512]{1,0}") == 1.0 and module._mib("(f32[2], s32[])") == 0
