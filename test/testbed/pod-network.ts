// The contract between the testbed's network and its simulated kubelet: the
// kubelet asks for a pod's network namespace on a node and runs the pod's
// containers inside it.

export interface PodAddresses {
  // Name of the pod's network namespace, under /run/netns.
  netns: string;
  ipv4: string;
  ipv6: string;
  // The veth end in the node's namespace, where an agent attaches to see
  // the pod's traffic.
  hostInterface: string;
}

export interface PodNetwork {
  // Node names, in the order the testbed created them.
  readonly nodes: readonly string[];

  // Name of the node's network namespace under /run/netns, where the
  // kubelet's tcpSocket probes run and reach every pod of the node.
  nodeNetns(node: string): string;

  // Creates the pod's namespace behind the node: loopback up, eth0 with one
  // IPv4 and one IPv6 address, and default routes through the node.
  addPod(node: string, pod: string): Promise<PodAddresses>;

  // Deletes the pod's namespace and its veth. Unknown pods are ignored.
  removePod(pod: string): Promise<void>;
}
