"""Peripherals declared in machine files: parsing errors that name the file, the field and the
line; the register-file model's rules; the IPCC's two processor views; and the registry of
models by name. Every peripheral here runs on a real bus of a real (unstarted) platform."""

from __future__ import annotations

from pathlib import Path

import pytest

from remoteproc.errors import RprocError
from remoteproc.platforms.emulator.machine import bundled_machines, parse_machine
from remoteproc.platforms.emulator.peripherals.models import model_names
from remoteproc.platforms.emulator.platform import EmulatorPlatform

MACHINES = Path(bundled_machines()["stm32mp157"]).parent
CORE = "[[core]]\nname = 'm'\ncpu = 'cortex-m4'\n"


def _machine(periphs: str, extra: str = "") -> str:
    return f"[machine]\nname = 't'\n{extra}\n{CORE}\n{periphs}"


def _error(text: str) -> str:
    with pytest.raises(RprocError) as info:
        parse_machine(text, "m.toml", MACHINES)
    assert info.value.errno == 22
    return str(info.value)


def test_models_are_registered_by_name() -> None:
    assert {"vsoc", "regfile", "svd", "stm32-ipcc", "stm32-hsem", "stm32-rcc", "stm32-usart",
            "stm32-gpio"} <= set(model_names())


def test_overlapping_peripherals_name_file_field_and_line() -> None:
    text = _machine("[[peripheral]]\nname = 'A'\nbase = 0x40000000\nsize = 0x400\n"
                    "model = 'regfile'\n\n"
                    "[[peripheral]]\nname = 'B'\nbase = 0x40000200\nsize = 0x400\n"
                    "model = 'regfile'\n")
    msg = _error(text)
    assert msg.startswith("m.toml: peripheral[1].base: peripheral 'B' [0x40000200, 0x40000600)"
                          " overlaps peripheral[0] 'A'"), msg
    assert "(line 16)" in msg, msg
    assert text.splitlines()[15] == "base = 0x40000200"


def test_unknown_model_names_the_models_and_the_line() -> None:
    text = _machine("[[peripheral]]\nname = 'X'\nbase = 0x40000000\nsize = 0x400\n"
                    "model = 'uart9000'\n")
    msg = _error(text)
    assert "m.toml: peripheral[0].model: unknown model 'uart9000' (expected one of " in msg
    assert "stm32-ipcc" in msg and "(line 12)" in msg, msg


def test_bad_svd_path_and_unknown_svd_peripheral() -> None:
    base = "[[peripheral]]\nname = 'USART3'\nbase = 0x4000F000\nsize = 0x400\nmodel = 'svd'\n"
    msg = _error(_machine(base + "svd = 'nope.svd'\n"))
    assert msg.startswith("m.toml: peripheral[0].svd: SVD file ") and "nope.svd not found" in msg
    assert "(line 13)" in msg, msg
    msg = _error(_machine(base + "svd = 'stm32mp15.svd'\nsvd_peripheral = 'USART9'\n"))
    assert "peripheral[0].svd_peripheral:" in msg and "has no peripheral 'USART9'" in msg
    msg = _error(_machine(base))
    assert "peripheral[0].svd: model 'svd' needs svd = PATH" in msg


def test_bad_params_name_the_param() -> None:
    msg = _error(_machine("[[peripheral]]\nname = 'I'\nbase = 0x4C001000\nsize = 0x400\n"
                          "model = 'stm32-ipcc'\nparams = { channels = 40 }\n"))
    assert "peripheral[0].params.channels: 40 (an IPCC has 1 to 16 channels)" in msg
    msg = _error(_machine("[[peripheral]]\nname = 'R'\nbase = 0x50001000\nsize = 0x400\n"
                          "model = 'regfile'\n"
                          "params.registers = [{ name = 'CR', offset = 0x3 }]\n"))
    assert "params.registers[0].offset: 0x3 is not a word inside" in msg
    msg = _error(_machine("[[peripheral]]\nname = 'R'\nbase = 0x50001000\nsize = 0x400\n"
                          "model = 'regfile'\n"
                          "params.registers = [{ name = 'FAR', offset = 0x400 }]\n"))
    assert "params.registers[0].offset: 0x400 is not a word inside the 0x400-byte window" in msg
    msg = _error(_machine("[[peripheral]]\nname = 'R'\nbase = 0x50001000\nsize = 0x400\n"
                          "model = 'regfile'\nparams = { colour = 'red' }\n"))
    assert "params.colour: unknown param for model 'regfile'" in msg


def test_peripheral_over_memory_or_scs_is_refused() -> None:
    msg = _error("[[peripheral]]\nname = 'P'\nbase = 0x1000\nsize = 0x100\nmodel = 'regfile'\n"
                 + CORE)
    assert "m.toml: core[0].memory: the default region 'tcm' at 0x0 overlaps peripheral 'P'" \
        in msg
    msg = _error(_machine("[[peripheral]]\nname = 'P'\nbase = 0xE000E800\nsize = 0x100\n"
                          "model = 'regfile'\n"))
    assert "peripheral 'P' overlaps cortex-m4's system control space" in msg


def _platform(text: str) -> EmulatorPlatform:
    return EmulatorPlatform(parse_machine(text, "m.toml", MACHINES))


def test_register_file_rules() -> None:
    text = _machine(
        "[[peripheral]]\nname = 'R'\nbase = 0x50001000\nsize = 0x400\nmodel = 'regfile'\n"
        "params.registers = [\n"
        "  { name = 'CR', offset = 0x0, reset = 0x11 },\n"
        "  { name = 'SR', offset = 0x4, reset = 0xF0, ro = 0xFF, w1c = 0xF0 },\n"
        "  { name = 'RDY', offset = 0x8, set = 0x10000 },\n"
        "]\n")
    with _platform(text) as plat:
        bus = plat["m"].bus
        assert bus.read(0x5000_1000) == 0x11
        bus.write(0x5000_1000, 0xABCD)
        assert bus.read(0x5000_1000) == 0xABCD
        bus.write(0x5000_1001, 0x55, 1)  # a byte store merges into the word
        assert bus.read(0x5000_1000) == 0x55CD and bus.read(0x5000_1001, 1) == 0x55
        bus.write(0x5000_1004, 0x330)  # bits 0-7 read-only, 4-7 W1C: clears 0x30, sets 0x300
        assert bus.read(0x5000_1004) == 0x3C0
        bus.write(0x5000_1008, 0)
        assert bus.read(0x5000_1008) == 0x10000  # reads as set, always
        assert plat["m"].unknown_accesses == []
        bus.read(0x5000_100C)  # not described: reported by name and offset
        assert [u.what for u in plat["m"].unknown_accesses] == ["R+0xc"]
        bus.reset()
        assert bus.read(0x5000_1000) == 0x11


def test_ipcc_both_views_and_its_interrupt_lines() -> None:
    with _platform(MACHINES.joinpath("stm32mp157.toml").read_text()) as plat:
        bus = plat["m4"].bus
        ipcc = bus.find("IPCC")
        base = 0x4C00_1000
        assert bus.read(base + 0x3F0) == 6  # HWCFGR.CHANNELS
        assert bus.read(base + 0x14) == 0x3F003F  # C2MR: everything masked at reset
        bus.write(base + 0x10, 1)  # C2CR.RXOIE
        bus.write(base + 0x14, 0x3F003F & ~1)  # unmask channel 1 occupied
        assert bus.lines() == 0
        ipcc.host_set(0)  # type: ignore[union-attr]  # processor 1 (the host) rings channel 1
        assert bus.read(base + 0x0C) == 1  # C1TOC2SR seen from the M4
        assert bus.lines() == 1 << 103  # IPCC_RX1
        bus.write(base + 0x18, 1)  # C2SCR.CH1C: the M4 takes it
        assert bus.read(base + 0x0C) == 0 and bus.lines() == 0
        rx: list[int] = []
        ipcc.on_host_rx = rx.append  # type: ignore[union-attr]
        bus.write(base + 0x18, 1 << 17)  # C2SCR.CH2S: the M4 rings channel 2
        assert rx == [1] and bus.read(base + 0x1C) == 2  # C2TOC1SR
        bus.write(base + 0x10, 1 | 1 << 16)  # TXFIE, channel 2 free still masked...
        bus.write(base + 0x14, 0x3F003F & ~1 & ~(1 << 16))  # ...unmask channel 1 free
        assert bus.lines() == 1 << 104  # IPCC_TX1: channel 1 is free
        # A host request on a busy channel is queued and rung again once the M4 frees it.
        assert ipcc.host_set(0) and not ipcc.host_set(0)  # type: ignore[union-attr]
        bus.write(base + 0x18, 1)
        assert bus.read(base + 0x0C) == 1


def test_gpio_bsrr_sets_and_resets_odr_and_idr_reads_outputs() -> None:
    with _platform(MACHINES.joinpath("stm32mp157.toml").read_text()) as plat:
        bus = plat["m4"].bus
        gpioh = 0x5000_9000
        assert bus.read(gpioh) == 0xFFFF_FFFF  # MODER: analog after reset
        bus.write(gpioh, 0xFFFF_7FFF & ~(3 << 14) | (1 << 14))  # PH7 output
        bus.write(gpioh + 0x18, 1 << 7)  # BSRR: set PH7
        assert bus.read(gpioh + 0x14) == 0x80 and bus.read(gpioh + 0x10) == 0x80
        bus.write(gpioh + 0x18, 1 << (16 + 7))  # BSRR: reset PH7
        assert bus.read(gpioh + 0x14) == 0 and bus.read(gpioh + 0x18) == 0
        assert plat["m4"].unknown_accesses == []


def test_stm32mp2_gpio_has_its_rif_registers_and_mp1_gpio_does_not() -> None:
    # STM32CubeMP2's resource manager reads a port's SECCFGR/PRIVCFGR/CIDCFGRn before it uses
    # a pin (the STM32MP215F-DK LED on GPIOH): on an MP2 port they are registers, not unknown.
    with _platform(MACHINES.joinpath("stm32mp215.toml").read_text()) as plat:
        bus = plat["m33"].bus
        gpioh = 0x442B_0000
        assert [bus.read(gpioh + off) for off in (0x30, 0x34, 0x88, 0x90, 0xB0)] == [0] * 5
        bus.write(gpioh + 0x88, 0x3)  # CIDCFGR7 (0x50 + 8 * 7)
        assert bus.read(gpioh + 0x88) == 3 and bus.read(gpioh + 0x8C) == 0  # SEMCR7 apart
        bus.write(gpioh + 0x18, 1 << 3)  # the port itself still works
        assert bus.read(gpioh + 0x14) == 1 << 3
        assert plat["m33"].unknown_accesses == []
    with _platform(MACHINES.joinpath("stm32mp157.toml").read_text()) as plat:
        plat["m4"].bus.read(0x5000_9000 + 0x30)
        assert [a for a in plat["m4"].unknown_accesses if "GPIOH" in str(a)]


def test_gpio_rif_param_must_be_a_boolean() -> None:
    msg = _error(_machine("[[peripheral]]\nname = 'G'\nbase = 0x50009000\nsize = 0x400\n"
                          "model = 'stm32-gpio'\nparams = { rif = 1 }\n"))
    assert "params.rif" in msg and "true or false" in msg


def test_line_of_a_field_inside_an_inline_array() -> None:
    text = _machine("[[peripheral]]\nname = 'R'\nbase = 0x50001000\nsize = 0x400\n"
                    "model = 'regfile'\nparams.registers = [\n"
                    "  { name = 'A', offset = 0x0 },\n"
                    "  { name = 'FAR', offset = 0x400 },\n]\n")
    msg = _error(text)
    assert "peripheral[0].params.registers[1].offset:" in msg
    line = int(msg.split("(line ")[1].split(")")[0])
    assert "'FAR'" in text.splitlines()[line - 1], (line, text)
