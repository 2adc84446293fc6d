/*
 * stm32mp157.h - the STM32MP157 registers this example uses, as the Cortex-M4 sees them.
 *
 * Addresses and bits are facts of the reference manual (RM0436) and the vendor CMSIS header
 * (stm32mp157cxx_cm4.h); no vendor code. The emulator's machine file
 * (src/remoteproc/platforms/emulator/machines/stm32mp157.toml) describes the same SoC.
 */
#ifndef STM32MP157_H
#define STM32MP157_H

#include <stdint.h>

#define REG(addr) (*(volatile uint32_t *)(uintptr_t)(addr))

/* ---- memory ------------------------------------------------------------------------------- */
#define RETRAM_BASE          0x00000000u   /* vectors (also at 0x38000000) */
#define MCUSRAM_BASE         0x10000000u   /* code + data (also at 0x30000000) */

/* ---- RCC (0x50000000) --------------------------------------------------------------------- */
#define RCC_BASE             0x50000000u
#define RCC_MSSCKSELR        REG(RCC_BASE + 0x048u)
#define RCC_MSSCKSELR_MCUSSRCRDY (1u << 31)
#define RCC_PLL3CR           REG(RCC_BASE + 0x880u)
#define RCC_PLLxCR_PLLRDY    (1u << 1)
#define RCC_OCRDYR           REG(RCC_BASE + 0x808u)
#define RCC_OCRDYR_HSIRDY    (1u << 0)
#define RCC_MCUDIVR          REG(RCC_BASE + 0x830u)
#define RCC_MCUDIVR_MCUDIVRDY (1u << 31)
#define RCC_APB1DIVR         REG(RCC_BASE + 0x834u)
#define RCC_APBxDIVR_RDY     (1u << 31)
#define RCC_MC_APB1ENSETR    REG(RCC_BASE + 0xA80u)
#define RCC_MC_APB1ENCLRR    REG(RCC_BASE + 0xA84u)
#define RCC_MC_APB1ENSETR_UART7EN (1u << 18)
#define RCC_MC_AHB3ENSETR    REG(RCC_BASE + 0xAA0u)
#define RCC_MC_AHB3ENCLRR    REG(RCC_BASE + 0xAA4u)
#define RCC_MC_AHB3ENSETR_HSEMEN (1u << 11)
#define RCC_MC_AHB3ENSETR_IPCCEN (1u << 12)
#define RCC_UART78CKSELR     REG(RCC_BASE + 0x8F0u)

/* ---- PWR (0x50001000) --------------------------------------------------------------------- */
#define PWR_BASE             0x50001000u
#define PWR_CR2              REG(PWR_BASE + 0x08u)
#define PWR_CR2_BREN         (1u << 0)
#define PWR_CR2_BRRDY        (1u << 16)

/* ---- HSEM (0x4C000000) -------------------------------------------------------------------- */
#define HSEM_BASE            0x4C000000u
#define HSEM_R(i)            REG(HSEM_BASE + 4u * (i))
#define HSEM_RLR(i)          REG(HSEM_BASE + 0x80u + 4u * (i))
#define HSEM_C2IER           REG(HSEM_BASE + 0x110u)
#define HSEM_C2ICR           REG(HSEM_BASE + 0x114u)
#define HSEM_C2MISR          REG(HSEM_BASE + 0x11Cu)
#define HSEM_LOCK            (1u << 31)
#define HSEM_COREID_POS      8u
#define HSEM_CPU2_COREID     2u            /* the Cortex-M4 */

/* ---- IPCC (0x4C001000): this core is processor 2 ------------------------------------------ */
#define IPCC_BASE            0x4C001000u
#define IPCC_C1TOC2SR        REG(IPCC_BASE + 0x0Cu)   /* flags the host (processor 1) set */
#define IPCC_C2CR            REG(IPCC_BASE + 0x10u)
#define IPCC_C2MR            REG(IPCC_BASE + 0x14u)
#define IPCC_C2SCR           REG(IPCC_BASE + 0x18u)
#define IPCC_C2TOC1SR        REG(IPCC_BASE + 0x1Cu)   /* flags we set towards the host */
#define IPCC_HWCFGR          REG(IPCC_BASE + 0x3F0u)
#define IPCC_CR_RXOIE        (1u << 0)
#define IPCC_SCR_CLEAR(ch)   (1u << (ch))
#define IPCC_SCR_SET(ch)     (1u << (16u + (ch)))
#define IPCC_MR_OCCUPIED_MASK(ch) (1u << (ch))
#define IPCC_MR_FREE_MASK(ch) (1u << (16u + (ch)))

/* ---- UART7 (0x40018000): the console ------------------------------------------------------ */
#define UART7_BASE           0x40018000u
#define USART_CR1(b)         REG((b) + 0x00u)
#define USART_BRR(b)         REG((b) + 0x0Cu)
#define USART_ISR(b)         REG((b) + 0x1Cu)
#define USART_TDR(b)         REG((b) + 0x28u)
#define USART_CR1_UE         (1u << 0)
#define USART_CR1_TE         (1u << 3)
#define USART_ISR_TC         (1u << 6)
#define USART_ISR_TXE        (1u << 7)
#define USART_ISR_TEACK      (1u << 21)

/* ---- TAMP backup registers (0x5C00A000) --------------------------------------------------- */
#define TAMP_BASE            0x5C00A000u
#define TAMP_BKP17R          REG(TAMP_BASE + 0x144u)   /* resource table address (Linux DT) */
#define TAMP_BKP18R          REG(TAMP_BASE + 0x148u)   /* coprocessor state */
#define COPRO_STATE_CRUN     2u

/* ---- DBGMCU ------------------------------------------------------------------------------- */
#define DBGMCU_IDCODE        REG(0x50081000u)

/* ---- NVIC lines (stm32mp157cxx_cm4.h IRQn_Type) ------------------------------------------- */
#define UART7_IRQn           82u
#define IPCC_RX1_IRQn        103u
#define IPCC_TX1_IRQn        104u
#define HSEM_IT2_IRQn        125u
#define NUM_IRQS             150u

/* ---- what the shared sources use ---------------------------------------------------------- */
#define SOC_NAME             "stm32mp157"
#define IPCC_RX_IRQn         IPCC_RX1_IRQn
#define CONSOLE_UART         UART7_BASE
#define SOC_HAS_HSEM         1

#define NVIC_ISER(n)         REG(0xE000E100u + 4u * (n))
#define SCB_VTOR             REG(0xE000ED08u)
#define SCB_MPU_TYPE         REG(0xE000ED90u)

static inline void nvic_enable(unsigned irq) { NVIC_ISER(irq / 32u) = 1u << (irq % 32u); }

#endif /* STM32MP157_H */
