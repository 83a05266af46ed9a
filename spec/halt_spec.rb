# frozen_string_literal: true

require_relative 'spec_helper'

# Halt policies: `--halt WHEN,COND` and `halt:` end a run early once enough
# items finally failed or were performed; `soon` lets the items in flight
# finish, `now` stops the workers and abandons them.
RSpec.describe 'halt policies' do
  # A task whose items follow HALT_PLAN, one letter each: `o` performed, `f`
  # fails (both take 50 ms), `F` fails 0.5 s after every earlier item
  # started (so that a loaded machine cannot reorder them), `S` is performed after
  # 1 s, `l` runs `sleep 30` in a child process. Each item logs `start I`
  # and `end I` to HALT_LOG. It has a `total` when HALT_TOTAL is set.
  let(:task) do
    <<~RUBY
      class Halting
        include Divvy::Parallelizable

        def initialize
          super
          @plan = ENV.fetch('HALT_PLAN').chars
          @log = ENV.fetch('HALT_LOG')
        end

        def total = ENV.key?('HALT_TOTAL') ? @plan.size : nil

        def dispatch
          @plan.each_index { |index| yield index }
        end

        def perform(index)
          note("start \#{index}")
          case @plan[index]
          when 'o' then sleep 0.05
          when 'f' then sleep 0.05; raise "item \#{index} failed"
          when 'F' then await_earlier(index); sleep 0.5; raise "item \#{index} failed"
          when 'S' then sleep 1
          when 'l' then system('sleep', '30')
          end
          note("end \#{index}")
        end

        def note(line) = File.open(@log, 'a') { |log| log.puts(line) }

        # Waits (10 s at most) until the items before `index` started.
        def await_earlier(index)
          deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 10
          until (0...index).all? { |earlier| File.read(@log).include?("start \#{earlier}\n") } ||
                Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
            sleep 0.01
          end
        end
      end
    RUBY
  end

  around do |example|
    Dir.mktmpdir do |dir|
      @dir = dir
      @script = write_script(dir, 'halting.rb', task)
      example.run
    end
  end

  def log
    path = File.join(@dir, 'log')
    File.exist?(path) ? File.read(path).lines.map(&:chomp) : []
  end

  # Runs `divvy ARGS halting.rb` on `plan`.
  def halting(plan, *args, total: false)
    env = { 'HALT_PLAN' => plan, 'HALT_LOG' => File.join(@dir, 'log') }
    env['HALT_TOTAL'] = '1' if total
    divvy(*args, @script, env: env)
  end

  def summary(result)
    result.stderr.lines.last.to_s.chomp
  end

  describe 'the divvy command' do
    it 'halts soon: sends nothing new, lets the items in flight finish, exits 3' do
      result = halting("Sff#{'o' * 10}", '-n', 2, '--halt', 'soon,fail=2')
      expect(result.exitstatus).to eq(3), result.stderr
      expect(summary(result)).to match(/\Adivvy: 1 performed, 2 failed, 0 retried, 0 workers respawned in \d+\.\d\ds; /)
      expect(summary(result)).to end_with('; halted: 2 items failed (--halt soon,fail=2)')
      expect(log).to include('start 0', 'end 0')
      expect(log.grep(/start ([3-9]|1\d)/)).to eq([])
    end

    it 'halts now: kills the workers and what they started, at once, and abandons their items' do
      result = halting("lF#{'o' * 5}", '-n', 2, '--halt', 'now,fail=1')
      expect(result.exitstatus).to eq(3), result.stderr
      expect(result.seconds).to be < 15
      expect(log).to include('start 0')
      expect(log).not_to include('end 0')
      expect(result.stderr).not_to include('performing [0]')
      # The item after 1 may have gone to item 1's worker when the master saw
      # it count item 1 as finished, before it read that item 1 failed.
      expect(summary(result)).to match(
        /\Adivvy: 0 performed, 1 failed, .* halted: 1 item failed \(--halt now,fail=1\), [12] items? abandoned\z/
      )
    end

    it 'counts a percentage of the task total, rounded up' do
      result = halting('ofofofofofofofofofof', '-n', 1, '--halt', 'soon,fail=10%', total: true)
      expect(result.exitstatus).to eq(3), result.stderr
      expect(summary(result)).to match(
        /\Adivvy: 2 performed, 2 failed, .* halted: 2 of 20 items failed \(--halt soon,fail=10%\)\z/
      )
    end

    it "counts a percentage of this shard's share of the total" do
      result = halting('fofofofo', '-n', 1, '--shard', '0/2', '--halt', 'soon,fail=50%', total: true)
      expect(result.exitstatus).to eq(3), result.stderr
      expect(summary(result)).to match(/\Adivvy: 0 performed, 2 failed, .* halted: 2 of 4 items failed \(--halt soon,fail=50%\)\z/)
    end

    it 'counts a percentage of the items settled so far when the total is unknown' do
      result = halting('oofofofofo', '-n', 1, '--halt', 'now,fail=30%')
      expect(result.exitstatus).to eq(3), result.stderr
      expect(summary(result)).to match(
        /\Adivvy: 3 performed, 2 failed, .* halted: 2 of the 5 items settled so far failed \(--halt now,fail=30%\)\z/
      )
    end

    it 'halts now on a success and exits 0, though items failed before it' do
      result = halting("lffo#{'o' * 5}", '-n', 2, '--halt', 'now,success=1')
      expect(result.exitstatus).to eq(0), result.stderr
      expect(result.seconds).to be < 15
      expect(log).not_to include('end 0')
      expect(summary(result)).to match(
        /\Adivvy: 1 performed, 2 failed, .* halted: 1 item performed \(--halt now,success=1\), [12] items? abandoned\z/
      )
    end

    it 'halts soon after N items performed' do
      result = halting('o' * 10, '-n', 1, '--halt', 'soon,success=3')
      expect(result.exitstatus).to eq(0), result.stderr
      expect(summary(result)).to match(/\Adivvy: 3 performed, 0 failed, .* halted: 3 items performed/)
      expect(log.grep(/\Aend/).size).to eq(3)
    end

    it 'counts only the items that finally failed, after their retries, and starts no retry once halted' do
      result = halting('ffffff', '-n', 1, '-r', 1, '--halt', 'soon,fail=2')
      expect(result.exitstatus).to eq(3), result.stderr
      expect(summary(result)).to match(/\Adivvy: 0 performed, 2 failed, .* halted: 2 items failed \(--halt soon,fail=2\)/)
      starts = log.grep(/\Astart/).tally
      expect(starts.values_at('start 0', 'start 1')).to eq([2, 2])
      expect(starts.values.sum).to be <= 5 # at most one retry queued, never started
    end

    %w[never default].each do |halt|
      it "runs every item despite failures with #{halt == 'never' ? '--halt never' : 'no --halt'}" do
        result = halting('ofofofofof', '-n', 2, *(halt == 'never' ? ['--halt', 'never'] : []))
        expect(result.exitstatus).to eq(1), result.stderr
        expect(summary(result)).to match(/\Adivvy: 5 performed, 5 failed, 0 retried, 0 workers respawned in \d+\.\d\ds\z/)
      end
    end

    {
      'sometimes' => 'halt must be never or WHEN,COND (WHEN: now or soon; COND: fail=N, fail=N%, ' \
                     'success=N or success=N%), got "sometimes"',
      'soon,done=1' => 'halt must be never or WHEN,COND (WHEN: now or soon; COND: fail=N, fail=N%, ' \
                       'success=N or success=N%), got "soon,done=1"',
      'soon,fail=0' => 'halt count must be from 1 to 9223372036854775807, got "soon,fail=0"',
      'now,fail=101%' => 'halt percentage must be from 1 to 100, got "now,fail=101%"'
    }.each do |bad, message|
      it "rejects --halt #{bad} as a usage error in one line, before the script runs" do
        result = halting('o', '--halt', bad)
        expect(result.exitstatus).to eq(2)
        expect(result.stderr.lines.first).to eq("divvy: invalid value: #{message}\n")
        expect(result.stderr).not_to match(/\.rb:\d+:in /)
        expect(log).to eq([])
      end
    end
  end

  describe 'from Ruby' do
    def ruby(code)
      ruby_code("require 'divvy'\n#{task}\n#{code}",
                env: { 'HALT_LOG' => File.join(@dir, 'log'), 'HALT_PLAN' => 'o' })
    end

    it 'Master#run returns normally and says the run halted, and why' do
      result = ruby(<<~RUBY)
        ENV['HALT_PLAN'] = 'ffffoooo'
        master = Divvy::Master.new(Halting.new, 1, halt: 'soon,fail=2')
        p [master.halt, master.halted?, master.halt_reason]
        p master.run
        p [master.halt, master.halted?, master.halt_reason, master.items_failed, master.items_performed]
      RUBY
      expect(result.stdout).to eq(<<~OUT), result.stderr
        ["soon,fail=2", false, nil]
        nil
        ["soon,fail=2", true, "2 items failed (--halt soon,fail=2)", 2, 0]
      OUT
    end

    it 'never halts by default, and forgets a halt when it runs again' do
      result = ruby(<<~RUBY)
        ENV['HALT_PLAN'] = 'ofof'
        master = Divvy::Master.new(Halting.new, 2)
        master.run
        p [master.halt, master.halted?, master.halt_reason, master.items_failed, master.items_performed]
        ENV['HALT_PLAN'] = 'ff'
        task = Halting.new
        master = Divvy::Master.new(task, 1, halt: 'soon,fail=1')
        master.run
        task.instance_variable_set(:@plan, %w[o o])
        master.run
        p [master.halted?, master.halt_reason]
      RUBY
      expect(result.stdout).to eq("[\"never\", false, nil, 2, 2]\n[false, nil]\n"), result.stderr
    end

    it 'halts now without waiting for a long item, whose failed hook is not called' do
      result = ruby(<<~RUBY)
        ENV['HALT_PLAN'] = 'lFoooo'
        task = Halting.new
        def task.failed(error, *args) = puts("failed \#{args.inspect}")
        master = Divvy::Master.new(task, 2, halt: 'now,fail=1')
        started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
        master.run
        # Item 2 may have gone to the worker of item 1 when the master saw
        # it count item 1 as finished, before it read that item 1 failed.
        p [master.halted?, master.workers_running?, master.items_failed, [2, 3].include?(master.tasks_distributed)]
        p Process.clock_gettime(Process::CLOCK_MONOTONIC) - started < 15
      RUBY
      expect(result.stdout).to eq("failed [1]\n[true, false, 1, true]\ntrue\n"), result.stderr
      expect(log).not_to include('end 0')
    end

    it 'Divvy.map halts soon on the first failure and raises it with the results gathered' do
      result = ruby(<<~RUBY)
        begin
          Divvy.map(0...40, workers: 2) { |i| sleep 0.05; raise 'no' if i == 5; i }
        rescue Divvy::TaskError => e
          p [e.args, e.others, e.results.compact.size < 20, e.results.first(5)]
        end
      RUBY
      expect(result.stdout).to eq("[[5], [], true, [0, 1, 2, 3, 4]]\n"), result.stderr
      expect(result.stderr).to include('halted: 1 item failed (--halt soon,fail=1)')
    end

    it 'Divvy.map runs every item with halt: "never" and raises the first failure with the others' do
      result = ruby(<<~RUBY)
        begin
          Divvy.map(0...10, workers: 2, halt: 'never') { |i| raise 'no' if i.odd?; i }
        rescue Divvy::TaskError => e
          p [e.others.size, e.results]
        end
      RUBY
      expect(result.stdout).to eq("[4, [0, nil, 2, nil, 4, nil, 6, nil, 8]]\n"), result.stderr
    end

    it 'Divvy.map returns the results so far after a success halt' do
      result = ruby("p Divvy.map(0...10, workers: 1, halt: 'soon,success=3') { |i| sleep 0.01; i * 2 }")
      expect(result.stdout).to eq("[0, 2, 4]\n"), result.stderr
    end

    it 'Divvy.each halts now on a failure and raises it without waiting for a long item' do
      result = ruby(<<~RUBY)
        started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
        begin
          Divvy.each([30, 0.2], workers: 2, halt: 'now,fail=1') { |s| system('sleep', s.to_s); raise 'no' if s < 1 }
        rescue Divvy::TaskError => e
          p [e.args, Process.clock_gettime(Process::CLOCK_MONOTONIC) - started < 15]
        end
      RUBY
      expect(result.stdout).to eq("[[0.2], true]\n"), result.stderr
    end

    it 'rejects a bad halt: with a one-line Divvy::Error' do
      result = ruby(<<~RUBY)
        [:soon, 3, { when: :soon, fail: 3 }, 'soon,fail=0', 'now,succes=1'].each do |halt|
          Divvy::Master.new(Halting.new, 1, halt: halt)
        rescue Divvy::Error => e
          puts e.message
        end
      RUBY
      expect(result.stdout).to eq(<<~OUT), result.stderr
        halt must be a String such as "soon,fail=3" or "never", got :soon
        halt must be a String such as "soon,fail=3" or "never", got 3
        halt must be a String such as "soon,fail=3" or "never", got {:when=>:soon, :fail=>3}
        halt count must be from 1 to 9223372036854775807, got "soon,fail=0"
        halt must be never or WHEN,COND (WHEN: now or soon; COND: fail=N, fail=N%, success=N or success=N%), got "now,succes=1"
      OUT
    end
  end
end
