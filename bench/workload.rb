# frozen_string_literal: true

# Runs one benchmark workload with one runner and prints its measurements
# as JSON: `ruby bench/workload.rb RUNNER WORKLOAD [ITEMS]` (ITEMS only for
# the memory workload).
#
# For the workloads without results (WORKLOADS), RUNNER is divvy (a task
# class), divvy_joblog (the same, with a job log), parallel (the parallel
# gem), ruby_pool (bench/ruby_pool.rb) or marshal: no workers, one process
# making each item's Marshal round trip itself (the yardstick of the tiny
# workload).
#
# For the map workloads (MAPS), RUNNER is divvy (Divvy.map), parallel
# (Parallel.map), divvy_task (the task path: a task class whose perform runs
# the block, with no results), serial (the block in a loop in this process)
# or split (the items shared out between forked processes that send nothing
# back: what the machine allows at best). The results of divvy and parallel
# are checked against the block's own after the clock stops; a wrong one
# fails the run.

require 'digest'
require 'json'
require 'fileutils'
require 'tmpdir'

runner, workload, count = ARGV
$LOAD_PATH.unshift(File.expand_path('../lib', __dir__))
require_relative 'ruby_pool'
require 'divvy'
require 'parallel'

# Each workload: how many workers, a producer of items (a lambda that
# returns the next item, nil at the end, so every runner streams them the
# same way) and what perform does with one.
MEGABYTE = 'x' * (1024 * 1024)

def counter(limit, &make)
  made = 0
  lambda do
    next nil if made >= limit

    made += 1
    make ? make.call(made - 1) : made - 1
  end
end

WORKLOADS = {
  'tiny' => { workers: 2, items: -> { counter(200_000) }, perform: ->(_) {} },
  'latency' => { workers: 50, items: -> { counter(500) }, perform: ->(_) { sleep 0.01 } },
  'skew' => { workers: 10, items: -> { counter(1010) { |i| i < 10 ? 1.0 : 0.001 } },
              perform: ->(seconds) { sleep seconds } },
  'payload' => { workers: 2, items: -> { counter(500) { MEGABYTE.dup } }, perform: ->(blob) { blob.bytesize } },
  'boot' => { workers: 100, items: -> { counter(100) }, perform: ->(_) {} },
  'startup' => { workers: 50, items: -> { counter(0) }, perform: ->(_) {} },
  'memory' => { workers: 2, items: -> { counter(Integer(count)) }, perform: ->(_) {} }
}.freeze

# How many SHA-256 rounds each item of the map_cpu workload makes.
SHA_ROUNDS = 200

# Each map workload: how many workers, how many items (0...items, given as
# that Range to every runner, as a user would) and the block mapped over them.
MAPS = {
  'map_tiny' => { workers: 2, items: 200_000, block: ->(i) { i * 2 } },
  'map_strings' => { workers: 2, items: 200_000, block: ->(i) { "item-#{i}" * 10 } },
  # Each result starts with its position, so one landing at the wrong place is seen.
  'map_large' => { workers: 2, items: 300, block: ->(i) { i.to_s.ljust(MEGABYTE.bytesize, 'x') } },
  'map_cpu' => { workers: 2, items: 6_000,
                 block: ->(i) { SHA_ROUNDS.times.reduce(i.to_s) { |digest, _| Digest::SHA256.digest(digest) } } }
}.freeze

# A divvy task over the workload's items.
class BenchTask
  include Divvy::Parallelizable

  def initialize(items, perform)
    @items = items
    @perform = perform
  end

  def dispatch
    while (item = @items.call)
      yield item
    end
  end

  def perform(item)
    @perform.call(item)
  end
end

# The task path of a map workload: a task class that yields the same Range
# Divvy.map is given and runs the block in perform, with no completed hook,
# so no result crosses the pipes.
class RangeTask
  include Divvy::Parallelizable

  def initialize(range, block)
    @range = range
    @block = block
  end

  def dispatch
    @range.each { |i| yield i }
  end

  def perform(item)
    @block.call(item)
  end
end

# Where the divvy_joblog runner writes its job log.
JOBLOG_DIR = Dir.mktmpdir('divvy-bench-')
at_exit { FileUtils.rm_rf(JOBLOG_DIR) }

# How each runner performs the items of a workload without results.
ITEM_RUNNERS = {
  'divvy' => ->(spec, items, perform) { Divvy::Master.new(BenchTask.new(items, perform), spec[:workers]).run },
  # divvy recording each item in a new job log (JOBLOG_DIR, removed at exit,
  # after the clock stops).
  'divvy_joblog' => lambda do |spec, items, perform|
    joblog = File.join(JOBLOG_DIR, 'run.log')
    Divvy::Master.new(BenchTask.new(items, perform), spec[:workers], joblog: joblog).run
  end,
  # The parallel gem streams from a lambda that returns Parallel::Stop at the end.
  'parallel' => lambda do |spec, items, perform|
    Parallel.each(-> { items.call || Parallel::Stop }, in_processes: spec[:workers]) { |item| perform.call(item) }
  end,
  'ruby_pool' => ->(spec, items, perform) { RubyPool.new(spec[:workers]) { |item| perform.call(item) }.run(items) },
  'marshal' => lambda do |_spec, items, perform|
    while (item = items.call)
      perform.call(Marshal.load(Marshal.dump(item)))
    end
  end
}.freeze

# How each runner maps the block of a map workload over its Range; each
# returns the results (the task path none: nil).
MAP_RUNNERS = {
  'divvy' => ->(spec, range) { Divvy.map(range, workers: spec[:workers], &spec[:block]) },
  'parallel' => ->(spec, range) { Parallel.map(range, in_processes: spec[:workers], &spec[:block]) },
  'divvy_task' => ->(spec, range) { Divvy::Master.new(RangeTask.new(range, spec[:block]), spec[:workers]).run },
  'serial' => ->(spec, range) { range.map(&spec[:block]) },
  # What the machine allows at best: the items split between forked
  # processes that loop over their share and send nothing back.
  'split' => lambda do |spec, range|
    pids = Array.new(spec[:workers]) do |share|
      fork do
        range.each { |i| spec[:block].call(i) if i % spec[:workers] == share }
        exit!(0)
      end
    end
    pids.each { |pid| Process.wait(pid) }
    nil
  end
}.freeze

# Fails the run, naming the first wrong result, unless `results` are the
# block's own for every item of the map workload, in order.
def check(results, spec, name)
  unless results.is_a?(Array) && results.size == spec[:items]
    abort "#{name}: #{spec[:items]} results expected, got #{results.is_a?(Array) ? results.size : results.class}"
  end
  results.each_with_index do |result, i|
    next if result == spec[:block].call(i)

    abort "#{name}: wrong result for item #{i}: #{result.inspect[0, 60]}"
  end
end

mapping = MAPS[workload]
if mapping
  run = MAP_RUNNERS.fetch(runner) { abort "unknown runner #{runner} for a map workload" }
  arguments = [mapping, 0...mapping[:items]]
else
  spec = WORKLOADS.fetch(workload) { abort "unknown workload #{workload}" }
  run = ITEM_RUNNERS.fetch(runner) { abort "unknown runner #{runner}" }
  arguments = [spec, spec[:items].call, spec[:perform]]
end

GC.start
started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
results = run.call(*arguments)
seconds = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
peak_rss_kb = File.read('/proc/self/status')[/VmHWM:\s+(\d+)/, 1].to_i
check(results, mapping, "#{runner} #{workload}") if mapping && %w[divvy parallel].include?(runner)
puts JSON.generate(seconds: seconds, peak_rss_kb: peak_rss_kb)
