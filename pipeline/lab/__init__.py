"""`make lab`: experiments that measure the ideas the product is built on, not assert them.

- `adding`: long memory. The adding problem at T = 50..400 for SimpleRNN, LSTM and GRU at
  the same parameter budget, and ∂loss/∂h_t over t for each cell at initialisation and
  after training (the vanishing gradient, seen).
- `activations`: a deep MLP and a small CNN trained with sigmoid, tanh, ReLU, GELU and SiLU
  on the same data, seed and budget: per-layer gradient norms in the first steps, the share
  of dead ReLUs, learning curves.
- `representations`: the penultimate layer of a Fashion-MNIST CNN and of the language-ID
  model, projected to 2-D by PCA and coloured by class.

Every experiment is an MLflow child run under one parent run; figures are PNG artifacts
(and files in the output folder), and a Markdown summary table closes the parent run.
"""
