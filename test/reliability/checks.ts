/** Every check of the suite, in the order they run (cheap and local first, the whole stack last). */
import { churn } from './churn.js';
import { faults } from './faults.js';
import type { Check } from './table.js';

export const checks: Check[] = [churn, faults];
