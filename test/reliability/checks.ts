/** Every check of the suite, in the order they run (cheap and local first, the whole stack last). */
import { abuse } from './abuse.js';
import { churn } from './churn.js';
import { faults } from './faults.js';
import { fuzz } from './fuzz.js';
import { hammer } from './hammer.js';
import { malformed } from './malformed.js';
import { memory } from './memory.js';
import { privacy } from './privacy.js';
import type { Check } from './table.js';

export const checks: Check[] = [malformed, fuzz, abuse, privacy, hammer, memory, churn, faults];
