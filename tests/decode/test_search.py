"""The generic beam search on hand-made next-token tables, where the right answer is known."""
import torch

from espnet_ext.decode.search import SearchConfig, _repeated_tail, beam_search, token_budget

EOT = 0
VOCAB = 6


class TableState:
    """Next-token log-probs depend only on the last token: a first-order Markov 'decoder'."""

    def __init__(self, table, n_rows):
        self.table = torch.log_softmax(torch.as_tensor(table, dtype=torch.float), dim=-1)
        self.last = torch.zeros(n_rows, dtype=torch.long)
        self.steps = 0

    def step(self, tokens):
        self.last = tokens[:, -1]
        self.steps += 1
        return self.table[self.last]

    def reorder(self, index):
        self.last = self.last[index]


def chain_table():
    # 5 (prompt) -> 1 -> 2 -> 3 -> EOT, every other choice much less likely
    table = torch.full((VOCAB, VOCAB), -5.0)
    for src, dst in [(5, 1), (1, 2), (2, 3), (3, EOT)]:
        table[src, dst] = 5.0
    return table


def run(table, prompts, config, budgets=None, suppress=None):
    suppress = torch.zeros(VOCAB, dtype=torch.bool) if suppress is None else suppress
    state = TableState(table, len(prompts) * config.beam_size)
    out = beam_search(state, prompts, EOT, suppress, budgets or [50] * len(prompts), config)
    return out, state


def test_greedy_follows_the_chain_and_drops_eot():
    out, _ = run(chain_table(), [[5]], SearchConfig(beam_size=1))
    assert out == [[1, 2, 3]]


def test_eot_is_never_the_first_token():
    table = chain_table()
    table[5, EOT] = 50.0  # the model wants an empty transcript
    out, _ = run(table, [[5]], SearchConfig())
    assert out[0] and out[0][0] == 1


def test_suppressed_token_is_never_emitted():
    suppress = torch.zeros(VOCAB, dtype=torch.bool)
    suppress[2] = True
    out, _ = run(chain_table(), [[5]], SearchConfig(), suppress=suppress)
    assert 2 not in out[0]


def test_batch_equals_one_by_one():
    table = torch.randn(VOCAB, VOCAB, generator=torch.Generator().manual_seed(0)) * 3
    prompts = [[1], [2], [3], [4]]
    for beam in (1, 3):
        config = SearchConfig(beam_size=beam, repeat_min_copies=50)
        batched, _ = run(table, prompts, config, budgets=[12] * 4)
        alone = [run(table, [p], config, budgets=[12])[0][0] for p in prompts]
        assert batched == alone


def test_beam_finds_a_better_path_than_greedy():
    # greedy takes 1 (p=.6), after which every token is equally unlikely; 2 (p=.4) leads to a sure EOT
    table = torch.full((VOCAB, VOCAB), -1e4)
    table[5, 1], table[5, 2] = torch.tensor(0.6).log(), torch.tensor(0.4).log()
    table[1, :] = 0.0
    table[2, EOT] = 0.0
    greedy, _ = run(table, [[5]], SearchConfig(beam_size=1, length_normalise=False), budgets=[3])
    beam, _ = run(table, [[5]], SearchConfig(beam_size=2, length_normalise=False), budgets=[3])
    assert greedy[0][0] == 1
    assert beam[0] == [2]


def test_loop_guard_stops_and_cuts_repeats():
    table = torch.full((VOCAB, VOCAB), -5.0)
    table[5, 1] = 5.0
    table[1, 2] = 5.0
    table[2, 1] = 5.0  # 1 2 1 2 1 2 ... forever
    out, state = run(table, [[5]], SearchConfig(repeat_min_copies=4), budgets=[200])
    assert out == [[1, 2]]
    assert state.steps < 12


def test_repeated_tail_lengths():
    assert _repeated_tail([7, 1, 1, 1, 1], 4, 4) == 3
    assert _repeated_tail([7, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2], 4, 4) == 8
    assert _repeated_tail([1, 2, 3, 4, 5, 6], 4, 2) == 0


def test_budget_scales_with_duration_and_is_capped():
    config = SearchConfig(max_tokens=100, tokens_per_second=10)
    short, long_, huge = token_budget([1.0, 5.0, 60.0], config)
    assert short < long_ <= 100 and huge == 100


def test_budget_ends_a_hypothesis():
    table = torch.zeros(VOCAB, VOCAB)
    table[:, EOT] = -50.0
    out, _ = run(table, [[5]], SearchConfig(repeat_min_copies=99), budgets=[7])
    assert len(out[0]) == 7
