# frozen_string_literal: true

# divvy with Ruby's garbage collector at its most hostile, in real
# processes: objects moved by compaction while the core holds them.
RSpec.describe 'divvy under the garbage collector' do
  # Runs Ruby `code` in a new process with divvy on the load path and
  # returns its Result; kills it and its workers should it run past
  # COMMAND_TIMEOUT.
  def ruby_script(code)
    run_long_command(['ruby', '-e', code], timeout: ProcessHelpers::COMMAND_TIMEOUT)
  end

  # Expects `result` to be a clean exit that printed `expected`.
  def expect_printed(result, expected)
    expect([result.stdout, result.exitstatus]).to eq([expected, 0]), result.stderr
  end

  describe 'GC.auto_compact' do
    it 'dispatches large Strings inside Arrays while a compacting collection is under way' do
      # Each yield finds a major collection half done (incremental marking,
      # lazy sweeping): the pause divvy takes while it snapshots the large
      # Strings finishes it, and compaction moves what is not pinned, such
      # as a String held by nothing but an Array. It crashed in
      # rb_str_new_frozen when the Strings found before the pause were used.
      result = ruby_script(<<~'RUBY')
        require 'divvy'
        GC.auto_compact = true
        $kept = []
        class Nested
          include Divvy::Parallelizable
          attr_reader :wrong
          def initialize = @wrong = []
          def large(i, size) = (i.to_s * size)[0, size]
          def dispatch
            30.times do |i|
              Array.new(50_000) { |j| "garbage #{j}" } # holes at the head of the heap
              $kept << Array.new(20_000) { |j| "kept #{j}" } # new pages at its tail
              $kept.shift if $kept.size > 3
              GC.start(full_mark: true, immediate_mark: false, immediate_sweep: false)
              yield i, [[large(i, 70_000), 'a'], [large(i, 66_000)]]
            end
          end
          def perform(i, pair, other)
            pair == [large(i, 70_000), 'a'] && other == [large(i, 66_000)]
          end
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
