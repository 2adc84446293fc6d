# sdk.mk - build rules for one firmware application on the virtual SoC, for both CPUs.
#
# An application Makefile sets
#   NAME   the image name (output: $(OUT)/$(NAME)-m4.elf and $(OUT)/$(NAME)-rv32.elf)
#   SRCS   its C / assembler sources (relative to the application directory)
# optionally EXTRA_CFLAGS, and then includes this file.
#
# Builds are reproducible: no timestamps, no build id, and source paths are rewritten to be
# relative to firmware/ (-ffile-prefix-map), so the same sources give the same bytes anywhere.

SDK        := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
FWROOT     := $(abspath $(SDK)/..)
OUT        ?= $(FWROOT)/out/examples
OBJBASE    ?= $(FWROOT)/out/obj
OBJROOT    := $(OBJBASE)/$(NAME)
ARCHES     ?= m4 rv32

SDK_SRCS   := board.c trace.c printf.c libc.c rpmsg.c mbox_vsoc.c

CC_m4      := arm-none-eabi-gcc
CC_rv32    := riscv64-unknown-elf-gcc
ARCHFLAGS_m4   := -mcpu=cortex-m4 -mthumb -mfloat-abi=soft
# zicsr must be named explicitly for CSR instructions with GCC 12's default ISA spec; libgcc is
# taken from the plain rv32imac multilib (the _zicsr spelling does not match a multilib).
ARCHFLAGS_rv32 := -march=rv32imac_zicsr -mabi=ilp32 -mcmodel=medlow
STARTUP_m4     := startup_m4.c
STARTUP_rv32   := startup_rv32.S trap_rv32.c
LIBGCC_m4      := $(shell $(CC_m4) -mcpu=cortex-m4 -mthumb -mfloat-abi=soft -print-libgcc-file-name)
LIBGCC_rv32    := $(shell $(CC_rv32) -march=rv32imac -mabi=ilp32 -print-libgcc-file-name)

# -Wno-format: uint32_t is `long` on arm-none-eabi and `int` on riscv-elf, so no format
# string is warning-free on both; the printf subset treats both the same.
CFLAGS     := -std=c11 -Os -g -Wall -Wextra -Werror -Wno-format -ffreestanding -fno-builtin \
              -fno-common -ffunction-sections -fdata-sections \
              -fno-tree-loop-distribute-patterns \
              -ffile-prefix-map=$(FWROOT)=firmware -Wa,--debug-prefix-map=$(FWROOT)=firmware \
              -I$(SDK)/include $(EXTRA_CFLAGS)
LDFLAGS    := -nostdlib -nostartfiles -Wl,--gc-sections -Wl,--build-id=none \
              -Wl,-L$(SDK)/ld -Wl,--no-warn-rwx-segments -Wl,-z,max-page-size=4096

.PHONY: all clean
all: $(foreach a,$(ARCHES),$(OUT)/$(NAME)-$(a).elf)

# $(call app_rules,arch)
define app_rules
OBJS_$(1) := $$(addprefix $(OBJROOT)/$(1)/app/,$$(addsuffix .o,$$(basename $$(SRCS)))) \
             $$(addprefix $(OBJROOT)/$(1)/sdk/,$$(addsuffix .o,$$(basename $$(SDK_SRCS) $$(STARTUP_$(1)))))

$(OBJROOT)/$(1)/app/%.o: %.c $$(wildcard $(SDK)/include/*.h) $$(wildcard *.h ../common/*.h)
	@mkdir -p $$(dir $$@)
	$$(CC_$(1)) $$(ARCHFLAGS_$(1)) $$(CFLAGS) -c $$< -o $$@

$(OBJROOT)/$(1)/app/%.o: %.S
	@mkdir -p $$(dir $$@)
	$$(CC_$(1)) $$(ARCHFLAGS_$(1)) $$(CFLAGS) -c $$< -o $$@

$(OBJROOT)/$(1)/sdk/%.o: $(SDK)/src/%.c $$(wildcard $(SDK)/include/*.h)
	@mkdir -p $$(dir $$@)
	$$(CC_$(1)) $$(ARCHFLAGS_$(1)) $$(CFLAGS) -c $$< -o $$@

$(OBJROOT)/$(1)/sdk/%.o: $(SDK)/src/%.S
	@mkdir -p $$(dir $$@)
	$$(CC_$(1)) $$(ARCHFLAGS_$(1)) $$(CFLAGS) -c $$< -o $$@

$(OBJROOT)/$(1)/libvsoc.a: $$(filter $(OBJROOT)/$(1)/sdk/%,$$(OBJS_$(1)))
	@rm -f $$@
	$$(CC_$(1):gcc=ar) rcsD $$@ $$^

# The startup object is linked directly (it holds the vectors / _start); the rest of the SDK
# comes from an archive, so an application only pulls what it uses (hello has no rpmsg).
$(OUT)/$(NAME)-$(1).elf: $$(filter $(OBJROOT)/$(1)/app/%,$$(OBJS_$(1))) $$(addprefix $(OBJROOT)/$(1)/sdk/,$$(addsuffix .o,$$(basename $$(STARTUP_$(1))))) $(OBJROOT)/$(1)/libvsoc.a $(SDK)/ld/$(1).ld $(SDK)/ld/vsoc-sections.ld
	@mkdir -p $$(dir $$@)
	$$(CC_$(1)) $$(ARCHFLAGS_$(1)) $$(LDFLAGS) -T $(1).ld -o $$@ \
	    $$(filter %.o,$$^) $(OBJROOT)/$(1)/libvsoc.a $$(LIBGCC_$(1)) \
	    -Wl,-Map=$(OBJROOT)/$(1)/$(NAME).map
endef

$(foreach a,$(ARCHES),$(eval $(call app_rules,$(a))))

clean:
	rm -rf $(OBJROOT) $(foreach a,$(ARCHES),$(OUT)/$(NAME)-$(a).elf)
