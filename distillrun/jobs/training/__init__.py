"""How the train stage trains: hardware profiles, DeepSpeed configs, the pre-flight memory
estimate, the per-worker training loop, checkpoints in the store, and the launch on Ray Train.

Import what you need from the submodules. `profiles`, `shapes`, `memory`, `plan` and `zero`
import neither torch nor ray, so the operator can use them to size the pods it asks for.
"""
