"""Gang scheduling and placement on a three-node cluster on this machine.

Run: python examples/placement_groups.py

Three node managers (1, 2 and 2 CPUs; one has a custom resource "ssd") join one head, as Ray's
own tests run them. A STRICT_SPREAD placement group reserves one CPU on each node at once; a
trainer actor and shard tasks run in its bundles; work needing "ssd" goes to the node that has
it; removing the group stops what runs in it and gives the CPUs back.
"""
from __future__ import annotations

import asyncray as ray
from asyncray.cluster_utils import Cluster
from asyncray.util import placement_group, placement_group_table, remove_placement_group
from asyncray.util.scheduling_strategies import PlacementGroupSchedulingStrategy


@ray.remote(num_cpus=1)
def shard_sum(shard: int) -> tuple[int, str]:
    return sum(range(shard * 1000, (shard + 1) * 1000)), ray.get_runtime_context().get_node_id()[:8]


@ray.remote(num_cpus=1)
class Trainer:
    def node(self) -> str:
        return ray.get_runtime_context().get_node_id()[:8]


@ray.remote(resources={"ssd": 1})
def read_from_ssd() -> str:
    return ray.get_runtime_context().get_node_id()[:8]


def main() -> None:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=2)
    ssd = cluster.add_node(num_cpus=2, resources={"ssd": 1})
    ray.init(address=cluster.address)
    try:
        print("nodes:", sorted(n["NodeID"][:8] for n in ray.nodes() if n["Alive"]))
        print("cluster CPUs:", ray.cluster_resources()["CPU"])
        print("ssd work runs on", ray.get(read_from_ssd.remote()), "(the ssd node is", ssd.node_id[:8] + ")")

        pg = placement_group([{"CPU": 1}] * 3, strategy="STRICT_SPREAD", name="gang")
        ray.get(pg.ready(), timeout=30)
        placed = placement_group_table(pg)["bundles_to_node_id"]
        print("one bundle per node:", {i: n[:8] for i, n in placed.items()})
        print("CPUs reserved for the group:", ray.available_resources()[f"CPU_group_{pg.id.hex()}"])

        trainer = Trainer.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, 0)).remote()
        print("trainer runs in bundle 0, on", ray.get(trainer.node.remote()))
        parts = [shard_sum.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, i)).remote(i)
                 for i in (1, 2)]
        results = ray.get(parts)
        print("shards:", [r[0] for r in results], "on", [r[1] for r in results])

        remove_placement_group(pg)
        print("group", placement_group_table(pg)["state"], "- its CPUs are back:",
              ray.available_resources()["CPU"] >= 3.0)
        try:
            ray.get(trainer.node.remote())
        except ray.exceptions.ActorDiedError:
            print("the trainer went with its group")
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main()
