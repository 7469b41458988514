/** Activities that touch the managed MySQL/MariaDB instances. Names in, credentials resolved here. */
import { probeInstance, probeTopology } from '../mysql/probe';
import type { InstanceProbe, InstanceRef, Topology } from '../shared/types';
import type { ActivityDeps } from './deps';

export function createMysqlActivities({ config }: ActivityDeps) {
  return {
    /** What one instance says about itself; an unreachable instance is reported, not thrown. */
    async probeInstance(ref: InstanceRef): Promise<InstanceProbe> {
      return probeInstance(config, ref.cluster, ref.instance);
    },

    /** All instances probed in parallel, roles derived from what they say. */
    async probeTopology(cluster: string): Promise<Topology> {
      return probeTopology(config, cluster);
    },
  };
}
