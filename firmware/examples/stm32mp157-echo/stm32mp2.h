/*
 * stm32mp2.h - the STM32MP257 / STM32MP215 registers this example uses, as the non-secure
 * Cortex-M33 sees them (facts of the vendor CMSIS headers stm32mp257fxx_cm33.h /
 * stm32mp215fxx_cm33.h and the Linux device trees; no vendor code). Build with
 * -DSOC_STM32MP257 or -DSOC_STM32MP215. Clocks and resets belong to the secure world and the
 * Cortex-A (SCMI): this firmware touches no RCC register.
 */
#ifndef STM32MP2_H
#define STM32MP2_H

#include <stdint.h>

#define REG(addr) (*(volatile uint32_t *)(uintptr_t)(addr))

/* ---- IPCC1 (non-secure): this core is processor 2 ------------------------------------------ */
#define IPCC_BASE            0x40490000u
#define IPCC_C1TOC2SR        REG(IPCC_BASE + 0x0Cu)
#define IPCC_C2CR            REG(IPCC_BASE + 0x10u)
#define IPCC_C2MR            REG(IPCC_BASE + 0x14u)
#define IPCC_C2SCR           REG(IPCC_BASE + 0x18u)
#define IPCC_C2TOC1SR        REG(IPCC_BASE + 0x1Cu)
#define IPCC_HWCFGR          REG(IPCC_BASE + 0x3F0u)
#define IPCC_CR_RXOIE        (1u << 0)
#define IPCC_SCR_CLEAR(ch)   (1u << (ch))
#define IPCC_SCR_SET(ch)     (1u << (16u + (ch)))
#define IPCC_MR_OCCUPIED_MASK(ch) (1u << (ch))

/* ---- USART2: the console ------------------------------------------------------------------ */
#define USART2_BASE          0x400E0000u
#define USART_CR1(b)         REG((b) + 0x00u)
#define USART_BRR(b)         REG((b) + 0x0Cu)
#define USART_ISR(b)         REG((b) + 0x1Cu)
#define USART_TDR(b)         REG((b) + 0x28u)
#define USART_CR1_UE         (1u << 0)
#define USART_CR1_TE         (1u << 3)
#define USART_ISR_TXE        (1u << 7)
#define USART_ISR_TEACK      (1u << 21)

/* ---- NVIC lines ----------------------------------------------------------------------------- */
#if defined(SOC_STM32MP257)
#define SOC_NAME             "stm32mp257"
#define IPCC_RX_IRQn         171u      /* IPCC1_RX_IRQn */
#elif defined(SOC_STM32MP215)
#define SOC_NAME             "stm32mp215"
#define IPCC_RX_IRQn         152u      /* IPCC1_RX_IRQn */
#else
#error "stm32mp2.h: define SOC_STM32MP257 or SOC_STM32MP215"
#endif
#define NUM_IRQS             (IPCC_RX_IRQn + 1u)
#define CONSOLE_UART         USART2_BASE
#define SOC_HAS_HSEM         0

#define NVIC_ISER(n)         REG(0xE000E100u + 4u * (n))
#define SCB_VTOR             REG(0xE000ED08u)
#define SCB_MPU_TYPE         REG(0xE000ED90u)

static inline void nvic_enable(unsigned irq) { NVIC_ISER(irq / 32u) = 1u << (irq % 32u); }

#endif /* STM32MP2_H */
