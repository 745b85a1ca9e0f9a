import t from 'tap';
import { startTestCluster } from './fixtures/cluster.js';
import { runScenarios, scenarios } from './fixtures/cluster-scenarios.js';

// The cross-instance scenarios on a 3-master Redis Cluster: every script stays on one slot, the bus is sharded pub/sub.
const crossInstance = Object.keys(scenarios).filter((name) => !name.startsWith('the bus goes down'));
runScenarios(t, 'redis-cluster', () => startTestCluster('redis-cluster'), crossInstance);
