/** Every check of the suite, in the order they run (cheap and local first, the whole stack last). */
import { hammer } from './hammer.js';
import { memory } from './memory.js';
import type { Check } from './table.js';

export const checks: Check[] = [hammer, memory];
