# frozen_string_literal: true

# divvy with Ruby's garbage collector at its most hostile, in real
# processes, checking every result. Each scenario runs in three modes:
# GC.stress (a collection at every allocation, which the workers inherit
# through fork), GC.auto_compact (objects moved while the core holds them,
# with GC.verify_compaction_references at each point where divvy hands
# control to the task, so that a reference left to a moved object is
# caught), and both at once (a compacting collection at every allocation).
# The scripts load only divvy and the standard library: some C extensions
# (Debian's rbs, for one) are not compaction-safe themselves. bin/test
# runs this file as a step of its own.
RSpec.describe 'divvy under the garbage collector' do
  # What every script starts with: its mode (its first argument) and the
  # helpers the scenarios share.
  def prelude
    <<~'RUBY'
      require 'divvy'
      MODE = ARGV.fetch(0)

      # Puts the GC in the script's mode, once the scenario's classes exist.
      def hostile_gc!
        GC.stress = true if %w[stress both].include?(MODE)
        GC.auto_compact = true if %w[compact both].include?(MODE)
      end

      # When compacting, moves every object that can move and checks that
      # nothing still refers to where one was.
      def squeeze
        GC.verify_compaction_references(toward: :empty) if %w[compact both].include?(MODE)
      end

      # A String of `size` bytes made from `seed`, the same in every process.
      def large(seed, size) = (seed.to_s * size)[0, size]

      # `value` as a scenario prints it: a large String by its size.
      def shown(value)
        return value.map { |element| shown(element) } if value.is_a?(Array)

        value.is_a?(String) && value.size > 1000 ? "#{value.size} bytes" : value
      end
    RUBY
  end

  # Runs the script `prelude` + `body` as `ruby -e` with `args` (the mode
  # first) and returns its Result; kills it and its workers should it run
  # past COMMAND_TIMEOUT.
  def ruby_script(body, *args)
    run_long_command(['ruby', '-e', prelude + body, *args], timeout: ProcessHelpers::COMMAND_TIMEOUT)
  end

  # Expects `result` to have exited with `status` after printing
  # `expected` (its lines in any order with `any_order`).
  def expect_printed(result, expected, status: 0, any_order: false)
    printed = any_order ? result.stdout.lines.sort.join : result.stdout
    outcome = [printed, result.exitstatus]
    expect(outcome).to eq([expected, status]), lambda {
      "expected #{[expected, status].inspect}\n     got #{outcome.inspect}\nstderr:\n#{result.stderr}"
    }
  end

  # A task with every hook: items that fail once (by a raise, by a SIGKILL
  # of their worker) and are tried again, one that always fails, large
  # items (snapshots, one of them changed after its yield) and a large
  # result. Its second argument is a directory for markers.
  def hostile_task
    <<~'RUBY'
      MARKS = ARGV.fetch(1)

      # True the first time `name` is asked for in this run.
      def first_time?(name)
        File.open(File.join(MARKS, name), File::CREAT | File::EXCL | File::WRONLY).close
        true
      rescue Errno::EEXIST
        false
      end

      class Hostile
        include Divvy::Parallelizable
        attr_reader :log

        def initialize = @log = []

        def dispatch
          5.times do |i|
            squeeze
            yield i, "s#{i}", [i, :sym, 'x' * 10]
          end
          blob = large(:blob, 70_000)
          yield 100, blob, [large(:nested, 80_000), 1]
          blob << 'changed after its yield'
          yield 101, large(:alone, 65_536)
        end

        def perform(i, text, extra = nil)
          squeeze
          Process.kill(:KILL, Process.pid) if i == 1 && first_time?('killed')
          raise "flaky #{i}" if i == 2 && first_time?('flaky')
          raise "always #{i}" if i == 3

          case i
          when 100 then [i, text == large(:blob, 70_000), extra == [large(:nested, 80_000), 1], large(:result, 90_000)]
          when 101 then [i, text == large(:alone, 65_536)]
          else [i, text * 2, extra]
          end
        end

        def completed(result, i, *)
          squeeze
          result[3] = result[3] == large(:result, 90_000) if i == 100
          @log << [:completed, i, shown(result)]
        end

        def failed(error, *args)
          squeeze
          @log << [:failed, error.reason, error.remote_message, error.attempts, shown(args)]
        end

        def before_fork(_worker) = squeeze
        def after_fork(_worker) = squeeze
      end

      task = Hostile.new
      hostile_gc!
      master = Divvy::Master.new(task, 2, retries: 1)
      master.run
      GC.stress = false
      task.log.sort_by { |kind, i| [kind, i.to_s] }.each { |entry| p entry }
      p [master.items_performed, master.items_failed, master.items_retried]
    RUBY
  end

  # What `hostile_task` prints.
  def hostile_output
    <<~'TEXT'
      [:completed, 0, [0, "s0s0", [0, :sym, "xxxxxxxxxx"]]]
      [:completed, 1, [1, "s1s1", [1, :sym, "xxxxxxxxxx"]]]
      [:completed, 100, [100, true, true, true]]
      [:completed, 101, [101, true]]
      [:completed, 2, [2, "s2s2", [2, :sym, "xxxxxxxxxx"]]]
      [:completed, 4, [4, "s4s4", [4, :sym, "xxxxxxxxxx"]]]
      [:failed, :raised, "always 3", 2, [3, "s3", [3, :sym, "xxxxxxxxxx"]]]
      [6, 1, 3]
    TEXT
  end

  # Divvy.map over items whose results are Arrays and Strings, some large;
  # then one whose block ends the run with a Divvy::Break.
  def map_script
    <<~'RUBY'
      hostile_gc!
      results = Divvy.map(1..6, workers: 2, after_fork: -> { squeeze }) do |i|
        squeeze
        [i, i.to_s, large(i, i * 15_000)]
      end
      broken = Divvy.map(1..5, workers: 1) do |i|
        raise Divvy::Break, [i, large(:break, 70_000)] if i == 3

        i
      end
      GC.stress = false
      p shown(results)
      p(results.each_with_index.all? { |(i, _, text), k| i == k + 1 && text == large(i, i * 15_000) })
      p [broken[0], broken[1] == large(:break, 70_000)]
    RUBY
  end

  # What `map_script` prints.
  def map_output
    <<~'TEXT'
      [[1, "1", "15000 bytes"], [2, "2", "30000 bytes"], [3, "3", "45000 bytes"], [4, "4", "60000 bytes"], [5, "5", "75000 bytes"], [6, "6", "90000 bytes"]]
      true
      [3, true]
    TEXT
  end

  # A run that TTIN grows from one worker to two while it dispatches.
  def grow_script
    <<~'RUBY'
      class Grow
        include Divvy::Parallelizable
        attr_reader :results

        def initialize = @results = []

        def dispatch
          8.times do |i|
            Process.kill(:TTIN, Process.pid) if i == 2
            squeeze
            yield i
            sleep 0.02
          end
        end

        def perform(i)
          sleep 0.03
          [i, i.to_s]
        end

        def completed(result, _i) = @results << result
      end

      task = Grow.new
      hostile_gc!
      master = Divvy::Master.new(task, 1)
      master.run
      GC.stress = false
      p task.results.sort, master.workers.map(&:number), master.spawn_count
    RUBY
  end

  # What `grow_script` prints.
  def grow_output
    <<~'TEXT'
      [[0, "0"], [1, "1"], [2, "2"], [3, "3"], [4, "4"], [5, "5"], [6, "6"], [7, "7"]]
      [1, 2]
      2
    TEXT
  end

  # A script for the divvy command: large items, one that overruns the
  # timeout, one that raises.
  def command_script
    <<~'RUBY'
      class CommandTask
        include Divvy::Parallelizable

        def dispatch
          5.times do |i|
            squeeze
            yield i, large(i, 70_000)
          end
        end

        def perform(i, blob)
          squeeze
          sleep 30 if i == 3
          raise "no #{i}" if i == 4

          [i, blob == large(i, 70_000)]
        end

        def completed(result, i, _blob)
          squeeze
          puts "completed #{i} #{result.inspect}"
        end

        def failed(error, i, _blob)
          squeeze
          puts "failed #{i} #{error.reason}"
        end
      end
      hostile_gc!
    RUBY
  end

  {
    'stress' => 'GC.stress',
    'compact' => 'GC.auto_compact',
    'both' => 'GC.stress and GC.auto_compact'
  }.each do |mode, setting|
    context "with #{setting}" do
      it 'runs a task with completed and failed hooks, retries, a killed worker and large items' do
        Dir.mktmpdir do |marks|
          expect_printed(ruby_script(hostile_task, mode, marks), hostile_output)
        end
      end

      it 'returns Divvy.map results that are Arrays and large Strings, and a Break value' do
        expect_printed(ruby_script(map_script, mode), map_output)
      end

      it 'adds a worker on TTIN' do
        expect_printed(ruby_script(grow_script, mode), grow_output)
      end

      it 'runs a script through the divvy command, an item timed out' do
        Dir.mktmpdir do |dir|
          script = write_script(dir, 'command_task.rb', prelude + command_script)
          command = ['ruby', File.join(ROOT, 'exe', 'divvy'), '-n', '2', '--timeout', '1', script, mode]
          result = run_long_command(command, timeout: ProcessHelpers::COMMAND_TIMEOUT)
          expect_printed(result, <<~TEXT, status: 1, any_order: true)
            completed 0 [0, true]
            completed 1 [1, true]
            completed 2 [2, true]
            failed 3 timed_out
            failed 4 raised
          TEXT
        end
      end
    end
  end

  describe 'the cases reported' do
    it 'returns Divvy.map results under GC.stress, the first one too (not its raw Marshal dump)' do
      result = ruby_script(<<~'RUBY', 'stress')
        hostile_gc!
        p Divvy.map([1, 2, 3], workers: 2) { |i| [i, i.to_s] }
      RUBY
      expect_printed(result, %([[1, "1"], [2, "2"], [3, "3"]]\n))
    end

    it 'survives GC.stress turned on in before_fork of the second worker, with a completed hook' do
      result = ruby_script(<<~'RUBY', 'plain')
        class Late
          include Divvy::Parallelizable
          attr_reader :results

          def initialize = @results = []
          def dispatch = 6.times { |i| yield i, "s#{i}" }
          def perform(i, text) = [i, text * 2]
          def before_fork(worker) = (GC.stress = true if worker.number == 2)
          def completed(result, i, text) = @results << [result, i, text]
        end

        task = Late.new
        Divvy::Master.new(task, 2).run
        GC.stress = false
        p task.results.sort
      RUBY
      expected = (0..5).map { |i| [[i, "s#{i}s#{i}"], i, "s#{i}"] }
      expect_printed(result, "#{expected.inspect}\n")
    end

    it 'dispatches large Strings inside Arrays while a compacting collection is under way' do
      # Each yield finds a major collection half done (incremental marking,
      # lazy sweeping): the pause divvy takes while it snapshots the large
      # Strings finishes it, and compaction moves what is not pinned, such
      # as a String held by nothing but an Array. It crashed in
      # rb_str_new_frozen when the Strings found before the pause were used.
      result = ruby_script(<<~'RUBY', 'plain')
        GC.auto_compact = true
        $kept = []
        class Nested
          include Divvy::Parallelizable
          attr_reader :wrong

          def initialize = @wrong = []

          def dispatch
            30.times do |i|
              Array.new(50_000) { |j| "garbage #{j}" } # holes at the head of the heap
              $kept << Array.new(20_000) { |j| "kept #{j}" } # new pages at its tail
              $kept.shift if $kept.size > 3
              GC.start(full_mark: true, immediate_mark: false, immediate_sweep: false)
              yield i, [[large(i, 70_000), 'a'], [large(i, 66_000)]]
            end
          end

          def perform(i, pair, other) = pair == [large(i, 70_000), 'a'] && other == [large(i, 66_000)]
          def completed(right, i, *) = right || @wrong << i
        end

        task = Nested.new
        Divvy::Master.new(task, 2).run
        p wrong: task.wrong, compacted: GC.stat(:compact_count) >= 30
      RUBY
      expect_printed(result, "{:wrong=>[], :compacted=>true}\n")
    end
  end
end
