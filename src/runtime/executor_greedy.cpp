// Greedy steps issued ahead of the host (Executor::issue_greedy). In lock step the
// device waits, between two steps, for the id to reach the host, for the host to
// wake and send it back, and for the next step's first launch; with a step queued
// behind the running one, it goes straight on.
//
// Slots: step k writes its id to ids_[k % 2], and step k + 1 embeds it from there.
// A copy on the D2H stream, after the step's argmax, takes it to host_ids_[k % 2]
// and copied_[k % 2] marks its end. Step k + 2 writes both slots again; it is issued
// only after take_greedy() has read step k's copy, and on the compute stream after
// step k + 1 embedded ids_[k % 2], so no slot is written while it may still be read.
#include "headinfer/error.hpp"
#include "runtime/executor.hpp"

namespace headinfer {

void Executor::issue_greedy(const int32_t* token) {
  HI_CHECK(greedy_in_flight() < 2, "issue_greedy: two steps are in flight already (take one first)");
  const int64_t k = greedy_issued_;
  int32_t* in = ids_ + (k + 1) % 2;  // where step k - 1 left its id
  if (token) {
    HI_CHECK(greedy_in_flight() == 0, "issue_greedy: a token from the host while steps are in flight");
    check_token(*token);
    be_.upload(in, token, sizeof *token);
  } else {
    HI_CHECK(chain_, "issue_greedy: no issued step's id to continue from (pass the token)");
  }
  // Pinned on a GPU (a copy into pageable memory would wait for the step); taken at
  // the first use, so executors that never decode this way pin nothing more.
  if (!host_ids_) host_ids_ = static_cast<int32_t*>(be_.alloc_host(2 * sizeof(int32_t)));
  int32_t* out = ids_ + k % 2;
  be_.argmax_to(forward_ids(in, 1), cfg_.vocab_size, out);
  be_.record(found_, Stream::Compute);
  be_.wait(Stream::D2H, found_);
  be_.copy_d2h_async(host_ids_ + k % 2, out, sizeof *out);
  be_.record(copied_[k % 2], Stream::D2H);
  greedy_issued_ = k + 1;
  chain_ = true;
}

int32_t Executor::take_greedy() {
  HI_CHECK(greedy_in_flight() > 0, "take_greedy: no greedy step in flight");
  const int64_t k = greedy_taken_;
  be_.sync(copied_[k % 2]);
  greedy_taken_ = k + 1;
  return host_ids_[k % 2];
}

void Executor::drop_greedy() {
  const int n = greedy_in_flight();
  if (n == 0) return;
  be_.synchronize();
  kv_->set_length(kv_->length() - n);
  greedy_taken_ = greedy_issued_;
  // A second dropped step overwrote the slot of the last taken one's id.
  chain_ = false;
}

}  // namespace headinfer
