/* soc.h - the SoC this build is for (-DSOC_STM32MP257 / -DSOC_STM32MP215, else STM32MP157). */
#ifndef SOC_H
#define SOC_H
#if defined(SOC_STM32MP257) || defined(SOC_STM32MP215)
#include "stm32mp2.h"
#else
#include "stm32mp157.h"
#endif
#endif /* SOC_H */
