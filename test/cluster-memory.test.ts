import t from 'tap';
import { startTestCluster } from './fixtures/cluster.js';
import { runScenarios } from './fixtures/cluster-scenarios.js';

runScenarios(t, 'memory', () => startTestCluster('memory'));
