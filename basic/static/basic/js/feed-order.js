// The order rule a job's and a batch's stream share (the server keeps the same one:
// basic/realtime/job_feed.py). An event at or below the last seq seen is dropped; one past the
// next is a gap (the server fills these itself, so this is a last resort): ask once for the
// missing events and drop this one, which comes again, in order.
export function takeInOrder(holder, frame, socket) {
  if (holder.lastSeq !== null && frame.seq <= holder.lastSeq) return false;
  if (holder.lastSeq !== null && frame.seq > holder.lastSeq + 1) {
    if (holder.resumedAfter !== holder.lastSeq && socket.send({ type: "resume", after: holder.lastSeq })) {
      holder.resumedAfter = holder.lastSeq;
    }
    return false;
  }
  holder.lastSeq = frame.seq;
  return true;
}
