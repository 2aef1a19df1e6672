"""Throughput measurements that hold on a noisy machine, and training seeds:
`python -m rlcore.bench COMMAND [options]`, COMMAND one of envs, vec, batched, batched-ppo, update,
compile, ppo, workers, gpu, seeds, rsl, algos, contention, all (`python -m rlcore.bench COMMAND --help` lists
its options; the commands are a table in rlcore/bench/__main__.py).

- envs:    raw steps/s of env.physics's engine (PyBullet or MuJoCo): one env, and SB3 DummyVecEnv /
           SubprocVecEnv over n_envs
- vec:     the physics backend's vector envs at 64 envs: shared memory (the default), SB3's
           SubprocVecEnv pipes over the same chunks, one in-process chunk; raw steps/s and parallel
           efficiency
- batched: the batched twin's env steps/s and memory per env, on each usable device
- batched-ppo: end-to-end rlcore PPO steps/s on the batched twin, per device and n_envs
- update:  the PPO update's samples/s and achieved GFLOP/s on each usable device, beside that
           device's fp32 torch.mm peak measured in the same rounds (rlcore.bench.flops)
- compile: train.compile off against on, on the CPU: the twin's env steps/s and end-to-end PPO
           steps/s (the CPU speedup of torch.compile)
- ppo:     end-to-end steps/s of rlcore PPO and SB3 PPO on the same physics env and
           hyperparameters, with the ratio, each side's parallel efficiency, and where rlcore's
           time goes
- workers: seconds to start 64 PyBullet worker processes under each start method the OS has
- gpu:     every GPU figure in one run, the CPU beside it: twin and PPO steps/s per size, memory
           estimate vs peak, time to 95% held-out, the hardware decision (rlcore.bench.gpu)
- rsl:     rlcore PPO vs rsl_rl PPO on the batched twin, same network and schedule, per usable
           device: steps/s and held-out success after equal wall time (rlcore.bench.rsl; needs
           the `bench` extra)
- algos:   every registered algorithm for the same minutes on the same env, held-out success
           over training time (rlcore.bench.algos)
- contention: k = 1, 2 (4) identical trainings at once and one beside a lowest-priority busy
           loop, rlcore on the twin and PyBullet and SB3 on PyBullet: per-run and aggregate steps/s
           against one run alone (rlcore.bench.contention)
- seeds:   N training seeds of the current params: held-out success with intervals, time to 95%
           (rlcore.bench.seeds)

Every throughput figure is the median of >= 3 rounds that alternate between the things compared
(A B C, A B C, ...), so a slow spell of a shared machine lands on all of them; each comes with its
spread and with the machine's single-env PyBullet steps/s, measured in the same rounds. All at the
training physics of params.yaml. The report stage calls the same functions.
"""
