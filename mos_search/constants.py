"""Names and ids shared across the toolkit, kept free of heavy imports for the CLI."""

VERSION = "0.1.0"

MODES = ("shared", "layer", "neuron")  # supernet weight generation
# how MoS expert banks start (mos_search.models.supernet.layers.ExpertLinear)
EXPERT_INITS = ("independent", "scaled", "copies")
SAMPLINGS = ("sandwich", "random")  # sub-architectures per training step
METRICS = ("loss", "bleu", "perplexity")  # what the oracle scores
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3  # special token ids of every tokenizer we train
