# frozen_string_literal: true

# A minimal pure-Ruby fork-and-pipe pool, the baseline a user could write
# in an afternoon: one pipe pair per worker, Marshal over the pipes, one
# round trip per item, IO.select to find a free worker.
class RubyPool
  # Forks `workers` processes that run `block` on each item they are sent.
  def initialize(workers, &block)
    @workers = Array.new(workers) { spawn_worker(block) }
  end

  # Sends every item `producer` returns until it returns nil, and waits
  # for all of them.
  def run(producer)
    idle = @workers.dup
    busy = {}
    while (item = producer.call)
      wait_for_idle(idle, busy) if idle.empty?
      free = idle.pop
      Marshal.dump(item, free[:to])
      busy[free[:from]] = free
    end
    wait_for_idle(idle, busy) until busy.empty?
    # Every pipe is closed before any worker is waited for, so they exit together.
    @workers.each { |worker| worker[:to].close }.each { |worker| Process.wait(worker[:pid]) }
  end

  private

  def wait_for_idle(idle, busy)
    ready, = IO.select(busy.keys)
    ready.each do |from|
      Marshal.load(from) # rubocop:disable Security/MarshalLoad -- our own worker's answer
      idle << busy.delete(from)
    end
  end

  def spawn_worker(block)
    to_reader, to_writer = IO.pipe
    from_reader, from_writer = IO.pipe
    pid = fork do
      to_writer.close
      from_reader.close
      serve(block, to_reader, from_writer)
    end
    to_reader.close
    from_writer.close
    to_writer.sync = true
    { pid: pid, to: to_writer, from: from_reader }
  end

  # Runs in a worker: performs the items read from `from_master`, answering
  # each on `to_master`, until the master closes the pipe.
  def serve(block, from_master, to_master)
    to_master.sync = true
    loop do
      block.call(Marshal.load(from_master)) # rubocop:disable Security/MarshalLoad -- the master's own item
      Marshal.dump(true, to_master)
    rescue EOFError
      exit!(0)
    end
  end
end
