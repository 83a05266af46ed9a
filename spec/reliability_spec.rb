# frozen_string_literal: true

require 'divvy'

# Nothing is lost: every item dispatched ends performed, failed with a
# reason, or retried, and the user can tell which.
RSpec.describe 'reliability' do
  # Runs Ruby code that defines a task class `Task` and prints what the run
  # left behind as one inspected line.
  def run_task(task_body, master_args: '2', after: 'p [m.items_performed, m.items_failed, m.items_retried]', env: {})
    ruby_code(<<~RUBY, env: env)
      require 'divvy'
      class Task
        include Divvy::Parallelizable
        #{task_body}
      end
      m = Divvy::Master.new(Task.new, #{master_args})
      m.run
      #{after}
    RUBY
  end

  describe 'a worker that dies mid-item' do
    it 'names the item a segfaulting worker held, replaces it and goes on' do
      result = run_task(<<~RUBY, after: 'p [m.items_performed, m.items_failed, m.spawn_count]')
        def dispatch; 40.times { |i| yield i }; end
        def perform(i)
          Process.kill(:SEGV, Process.pid) if i == 3
          sleep 0.02
        end
      RUBY
      expect(result.stderr).to match(/^divvy: worker \d \(pid \d+\) died by SIGSEGV while performing \[3\]$/)
      expect(result.stdout).to eq("[39, 1, 3]\n")
    end

    it 'names the signal of a crash that Ruby turns into an abort: SIGSEGV, SIGBUS' do
      result = run_task(<<~RUBY, master_args: '1', after: '')
        def dispatch; yield :SEGV; yield :BUS; yield :none; end
        def perform(signal); Process.kill(signal, Process.pid) unless signal == :none; end
        def failed(error, signal); puts [signal, error.reason, error.signal].inspect; end
      RUBY
      expect(result.stdout.lines(chomp: true)).to eq(['[:SEGV, :died, "SIGSEGV"]', '[:BUS, :died, "SIGBUS"]'])
      expect(result.stderr).to match(/^divvy: worker 1 \(pid \d+\) died by SIGSEGV while performing \[:SEGV\]$/)
      expect(result.stderr).to include('Segmentation fault') # Ruby's own crash report stays
    end

    it 'names the status of a worker that called exit! mid-item' do
      result = run_task(<<~RUBY)
        def dispatch; 3.times { |i| yield i }; end
        def perform(i); exit!(7) if i == 1; end
      RUBY
      expect(result.stderr).to match(/worker \d \(pid \d+\) exited with status 7 while performing \[1\]/)
      expect(result.stdout).to eq("[2, 1, 0]\n")
    end
  end

  describe 'results that die with their worker' do
    it 'tries again the items whose results the worker took with it when it died' do
      Dir.mktmpdir do |dir|
        result = ruby_code(<<~RUBY, env: { 'DIR' => dir })
          require 'divvy'
          first = File.join(ENV.fetch('DIR'), 'first')
          File.write(first, '')
          results = Divvy.map(1..100, workers: 1, retries: 1) do |i|
            if i == 50 && File.exist?(first)
              File.delete(first)
              exit!(3)
            end
            i
          end
          p results == (1..100).to_a
        RUBY
        expect(result.stdout).to eq("true\n"), result.stderr
      end
    end

    it 'fails them, saying their result was lost, when no retry remains; never counts them as performed' do
      after = 'p [m.items_performed + m.items_failed, m.items_performed == $done.size, $done.uniq == $done]'
      result = run_task(<<~RUBY, master_args: '1', after: after)
        def dispatch; 300.times { |i| yield i }; end
        def perform(i); exit!(3) if i == 150; i; end
        def completed(result, i); ($done ||= []) << result; end
        def failed(error, i); puts [i, error.reason].inspect if error.reason == :lost; end
      RUBY
      expect(result.stdout.lines.last).to eq("[300, true, true]\n"), result.stderr
      lost = result.stdout.lines.grep(/:lost/).map { |line| line[/\d+/].to_i }
      lines = result.stderr.lines.grep(/its result was lost/)
      expect(lines.size).to eq(lost.size)
      expect(lines).to all(match(/\Adivvy: worker 1 \(pid \d+\) exited with status 3 after performing \[\d+\]; its result was lost\n\z/))
      expect(lost).to all(be < 150)
      expect(result.stderr).to match(/exited with status 3 while performing \[150\]/)
    end

    it 'tries again items whose worker closed its pipes before answering' do
      Dir.mktmpdir do |dir|
        result = ruby_code(<<~RUBY, env: { 'DIR' => dir })
          require 'divvy'
          # Each closing worker takes the results of the items in its window
          # with it, and one item may be in two such windows: room to retry.
          results = Divvy.map(1..40, workers: 2, retries: 5) do |i|
            marker = File.join(ENV.fetch('DIR'), "closed-\#{i}")
            if i % 10 == 3 && !File.exist?(marker)
              File.write(marker, '')
              Dir.children('/proc/self/fd').map(&:to_i).each do |fd|
                next unless fd > 2 && (File.readlink("/proc/self/fd/\#{fd}") rescue '').start_with?('pipe:')
                IO.for_fd(fd).close rescue nil
              end
            end
            i * 2
          end
          p results == (1..40).map { |i| i * 2 }
        RUBY
        expect(result.stdout).to eq("true\n"), result.stderr
        expect(result.stderr).not_to include('panicked')
      end
    end

    it 'sends an item to another worker at no cost when its worker was killed idle before it began it' do
      result = ruby_code(<<~RUBY)
        require 'divvy'
        class Idle
          include Divvy::Parallelizable
          attr_accessor :master
          def dispatch
            yield 1
            sleep 0.5 # the worker performs item 1 and waits, idle
            master.workers.first.kill(:KILL)
            yield 2 # sent to the dead worker, not yet reaped
            yield 3
          end
          def perform(_); end
        end
        task = Idle.new
        task.master = Divvy::Master.new(task, 1)
        task.master.run
        p [task.master.items_performed, task.master.items_failed, task.master.items_retried]
      RUBY
      expect(result.stdout).to eq("[3, 0, 0]\n"), result.stderr
      expect(result.stderr).not_to match(/while performing/)
    end
  end

  describe 'retries' do
    let(:flaky) do
      <<~RUBY
        def dispatch; 6.times { |i| yield i }; end
        def perform(i)
          marker = File.join(ENV.fetch('DIR'), "try-\#{i}-\#{Dir[File.join(ENV.fetch('DIR'), "try-\#{i}-*")].size}")
          File.write(marker, '')
          tries = Dir[File.join(ENV.fetch('DIR'), "try-\#{i}-*")].size
          raise "flaky \#{i}" if i == 2 && tries <= 2
          Process.kill(:KILL, Process.pid) if i == 4 && tries == 1
        end
      RUBY
    end

    it 'tries an item that raised or whose worker died again, up to the limit' do
      Dir.mktmpdir do |dir|
        result = run_task(flaky, master_args: '2, true, retries: 2', env: { 'DIR' => dir })
        expect(result.stdout).to eq("[6, 0, 3]\n")
        expect(result.stderr).to include('retrying [2] (attempt 2 of 3)', 'retrying [2] (attempt 3 of 3)',
                                         'retrying [4] (attempt 2 of 3)')
        expect(result.stderr.lines.last).to match(/6 performed, 0 failed, 3 retried, 1 workers? respawned/)
      end
    end

    it 'fails the item once the retries are used up' do
      Dir.mktmpdir do |dir|
        result = run_task(flaky, master_args: '2, retries: 1', env: { 'DIR' => dir })
        expect(result.stdout).to eq("[5, 1, 2]\n")
        expect(Dir[File.join(dir, 'try-2-*')].size).to eq(2)
      end
    end

    it 'is offered by the command as --retries' do
      Dir.mktmpdir do |dir|
        script = write_script(dir, 'flaky.rb', "class Flaky\ninclude Divvy::Parallelizable\n#{flaky}\nend\n")
        expect(divvy('-n', 2, '--retries', 2, script, env: { 'DIR' => dir }).exitstatus).to eq(0)
      end
    end
  end

  describe 'timeouts' do
    it 'stops a worker whose item runs too long, reports the item and replaces the worker' do
      after = 'p [m.items_performed, m.items_failed, m.spawn_count]'
      result = run_task(<<~RUBY, master_args: '2, timeout: 0.5', after: after)
        def dispatch; 40.times { |i| yield i }; end
        def perform(i); sleep(i == 1 ? 30 : 0.05); end
      RUBY
      expect(result.stderr).to match(/worker \d \(pid \d+\) timed out after 0.5s performing \[1\]/)
      expect(result.stdout).to eq("[39, 1, 3]\n")
      expect(result.seconds).to be < 20
    end

    it 'kills a worker that ignores TERM after a grace period' do
      result = run_task(<<~RUBY, master_args: '1, timeout: 0.3')
        def after_fork(_); trap(:TERM) {}; end
        def dispatch; yield 1; end
        def perform(_); sleep 30; end
      RUBY
      expect(result.stderr).to include('timed out after 0.3s performing [1]')
      expect(result.stdout).to eq("[0, 1, 0]\n")
    end

    it 'retries a timed-out item when retries remain' do
      Dir.mktmpdir do |dir|
        result = run_task(<<~RUBY, master_args: '1, timeout: 0.3, retries: 1', env: { 'DIR' => dir })
          def dispatch; yield 1; end
          def perform(_)
            first = !File.exist?(File.join(ENV.fetch('DIR'), 'tried'))
            File.write(File.join(ENV.fetch('DIR'), 'tried'), '')
            sleep 30 if first
          end
        RUBY
        expect(result.stdout).to eq("[1, 0, 1]\n")
      end
    end

    it 'is offered by the command as --timeout' do
      Dir.mktmpdir do |dir|
        script = write_script(dir, 'slow.rb', <<~RUBY)
          class Slow
            include Divvy::Parallelizable
            def dispatch; yield 1; end
            def perform(_); sleep 30; end
          end
        RUBY
        result = divvy('-n', 1, '--timeout', '0.2', script)
        expect(result.exitstatus).to eq(1)
        expect(result.stderr).to include('timed out after 0.2s performing [1]')
      end
    end
  end

  describe 'the failed hook' do
    # Runs a task whose failed hook prints the TaskError's readers.
    def failed_hook_output(perform_body, master_args: '1')
      run_task(<<~RUBY, master_args: master_args, after: '')
        def dispatch; yield 5, 'five'; end
        def perform(number, word); #{perform_body}; end
        def failed(error, *args)
          p [error.class, error.reason, error.remote_class, error.remote_message, error.worker_number,
             error.worker_pid.is_a?(Integer), error.signal, error.exit_status, error.args, error.attempts, args]
          puts error.message
          puts error.backtrace.first.to_s
        end
      RUBY
    end

    it 'receives a Divvy::TaskError describing a raised exception, with its backtrace' do
      result = failed_hook_output('raise IndexError, "no #{word}"') # rubocop:disable Lint/InterpolationCheck
      lines = result.stdout.lines
      expect(lines[0]).to eq("[Divvy::TaskError, :raised, \"IndexError\", \"no five\", 1, true, nil, nil, [5, \"five\"], 1, [5, \"five\"]]\n")
      expect(lines[1]).to match(/\Aworker 1 \(pid \d+\) failed performing \[5, "five"\]: IndexError: no five$/)
      expect(lines[2]).to match(/-e:\d+:in `perform'/)
    end

    it 'works for an exception that Marshal cannot dump' do
      result = failed_hook_output(<<~RUBY.tr("\n", ';'))
        error = RuntimeError.new('holds a proc')
        error.instance_variable_set(:@callback, proc {})
        raise error
      RUBY
      expect(result.stdout.lines[0]).to start_with('[Divvy::TaskError, :raised, "RuntimeError", "holds a proc"')
    end

    it 'names the signal of a worker that died' do
      result = failed_hook_output('Process.kill(:KILL, Process.pid)')
      expect(result.stdout.lines[0]).to start_with('[Divvy::TaskError, :died, nil, nil, 1, true, "SIGKILL", nil')
    end

    it 'names the exit status of a worker that exited' do
      result = failed_hook_output('exit!(4)')
      expect(result.stdout.lines[0]).to start_with('[Divvy::TaskError, :died, nil, nil, 1, true, nil, 4')
    end

    it 'says when the item timed out, after its retries' do
      result = failed_hook_output('sleep 30', master_args: '1, timeout: 0.2, retries: 1')
      expect(result.stdout.lines[0]).to start_with('[Divvy::TaskError, :timed_out, nil, nil, 1, true, nil, nil, [5, "five"], 2')
    end
  end

  describe 'bad items' do
    it 'raises Divvy::Error at the yield of an item Marshal cannot dump, then finishes what is in flight' do
      Dir.mktmpdir do |dir|
        result = run_task(<<~RUBY, after: '', env: { 'DIR' => dir })
          def dispatch
            yield 1
            begin
              yield 2, proc {}
            rescue Divvy::Error => e
              puts "at the yield: \#{e.message}"
              raise
            end
            yield 3
          end
          def perform(i, *); sleep 0.2; File.write(File.join(ENV.fetch('DIR'), i.to_s), ''); end
        RUBY
        expect(result.stdout).to match(/\Aat the yield: cannot dispatch item \[2, #<Proc:.*\]: argument 2 \(a Proc\) cannot be marshalled: no _dump_data is defined for class Proc$/)
        expect(result.stderr).to match(/cannot dispatch item .* \(Divvy::Error\)/)
        expect(result.exitstatus).to eq(1)
        expect(Dir.children(dir)).to eq(['1'])
      end
    end

    it 'hands the failed hook the arguments as yielded when their dump does not load back' do
      result = ruby_code(<<~RUBY)
        require 'divvy'
        class Fragile
          def initialize(n) = @n = n
          def marshal_dump = @n
          def marshal_load(n) = raise("cannot load \#{n}")
        end
        class Task
          include Divvy::Parallelizable
          def dispatch = [1, 2].each { |i| yield Fragile.new(i), i }
          def perform(_fragile, i) = i
          def failed(error, fragile, i) = puts("\#{i} \#{fragile.class} \#{error.remote_message}")
        end
        Divvy::Master.new(Task.new, 1).run
        begin
          Divvy.map([Fragile.new(3)], workers: 1) { |fragile| fragile }
        rescue Divvy::TaskError => e
          puts "map: \#{e.remote_class}: \#{e.remote_message}"
        end
      RUBY
      expect(result.stdout).to eq("1 Fragile cannot load 1\n2 Fragile cannot load 2\nmap: RuntimeError: cannot load 3\n"),
                               result.stderr
    end

    it 'fails an item whose result cannot be loaded in the master, and goes on' do
      result = run_task(<<~RUBY, master_args: '1, retries: 1')
        class ::Unloadable
          def marshal_dump = 0
          def marshal_load(_) = (raise 'only workers load it' unless Divvy.worker)
        end
        def dispatch = 3.times { |i| yield i }
        def perform(i) = (i == 1 ? Unloadable.new : i)
        def completed(_result, i) = puts("completed \#{i}")
      RUBY
      expect(result.stdout.lines).to contain_exactly("completed 0\n", "completed 2\n", "[2, 1, 1]\n")
      expect(result.stderr).to include('failed performing [1]: RuntimeError: the result of perform could not be ' \
                                       'loaded in the master: only workers load it')
    end

    it 'fails an item whose arity does not match perform, keeping the worker' do
      result = run_task(<<~RUBY, master_args: '1', after: 'p [m.items_performed, m.items_failed, m.spawn_count]')
        def dispatch; yield 1; yield 1, 2; yield 3; end
        def perform(number); end
      RUBY
      expect(result.stderr).to match(/failed performing \[1, 2\]: ArgumentError: Task#perform takes 1 argument but the item has 2$/)
      expect(result.stdout).to eq("[2, 1, 1]\n")
    end
  end

  describe 'options' do
    it 'rejects bad retries and timeouts' do
      task = Class.new { include Divvy::Parallelizable }.new
      expect { Divvy::Master.new(task, 1, retries: -1) }.to raise_error(Divvy::Error, /retries must be a non-negative Integer, got -1/)
      expect { Divvy::Master.new(task, 1, retries: 'x') }.to raise_error(Divvy::Error, /retries must be/)
      expect { Divvy::Master.new(task, 1, timeout: 0) }.to raise_error(Divvy::Error, /timeout must be a positive number of seconds, got 0/)
      expect { Divvy::Master.new(task, 1, timeout: 'soon') }.to raise_error(Divvy::Error, /timeout must be/)
      expect { Divvy::Master.new(task, 1, tries: 3) }.to raise_error(ArgumentError, /unknown keyword: :tries/)
      master = Divvy::Master.new(task, 1, retries: 2, timeout: 1.5)
      expect([master.retries, master.timeout]).to eq([2, 1.5])
    end

    it 'rejects bad --retries and --timeout on the command line with status 2' do
      script = File.join(ROOT, 'examples', 'danceparty.rb')
      [%w[--retries -1], %w[--retries x], %w[--timeout 0], %w[--timeout soon]].each do |option|
        result = divvy(*option, script)
        expect(result.exitstatus).to eq(2), option.inspect
        expect(result.stderr.lines.first).to match(/\Adivvy: invalid/)
      end
    end
  end

  describe 'workers that cannot start' do
    it 'stops the run with BootFailure when replacements keep dying at start' do
      Dir.mktmpdir do |dir|
        result = run_task(<<~RUBY, after: '', env: { 'DIR' => dir })
          def after_fork(_); exit!(1) if File.exist?(File.join(ENV.fetch('DIR'), 'broken')); end
          def dispatch; 50.times { |i| yield i }; end
          def perform(i)
            sleep 0.01
            return unless i == 5
            File.write(File.join(ENV.fetch('DIR'), 'broken'), '')
            Process.kill(:KILL, Process.pid)
          end
        RUBY
        expect(result.exitstatus).to eq(1)
        expect(result.stderr).to match(/workers failed to boot: 3 in a row died before they were ready.*\(Divvy::Master::BootFailure\)/)
      end
    end
  end

  describe 'the summary' do
    it 'is printed with -v' do
      result = divvy('-v', '-n', 2, File.join(ROOT, 'examples', 'danceparty.rb'), 4)
      expect(result.stderr.lines.last).to match(/\Adivvy: 4 performed, 0 failed, 0 retried, 0 workers respawned in \d+\.\d\ds$/)
    end

    it 'is not printed by a quiet run that went well' do
      expect(divvy('-n', 2, File.join(ROOT, 'examples', 'danceparty.rb'), 4).stderr).to eq('')
    end
  end

  describe 'chaos' do
    # Ruby code that runs `master` while a thread SIGKILLs one of its
    # workers at random every 50 ms.
    def run_while_killing(master)
      <<~RUBY
        killer = Thread.new { loop { sleep 0.05; #{master}.workers.sample.kill(:KILL) } }
        #{master}.run
        killer.kill
      RUBY
    end

    it 'accounts for every item while workers are killed at random every 50 ms' do
      Dir.mktmpdir do |dir|
        result = ruby_code(<<~RUBY, env: { 'DIR' => dir })
          require 'divvy'
          class Chaos
            include Divvy::Parallelizable
            def dispatch; 3000.times { |i| yield i }; end
            def perform(i)
              File.write(File.join(ENV.fetch('DIR'), i.to_s), '')
              sleep 0.001 # long enough that the kills land during the run
            end
          end
          master = Divvy::Master.new(Chaos.new, 4, retries: 5)
          #{run_while_killing('master')}
          p [master.items_performed, master.items_failed, master.tasks_distributed, master.spawn_count > 4]
        RUBY
        expect(result.status).to be_success, result.stderr
        expect(result.stdout).to eq("[3000, 0, 3000, true]\n")
        expect(Dir.children(dir).map(&:to_i).sort).to eq((0...3000).to_a)
      end
    end

    it 'brings every result back exactly once while workers are killed at random every 30 ms' do
      result = ruby_code(<<~RUBY)
        require 'divvy'
        class Results
          include Divvy::Parallelizable
          attr_reader :seen
          def initialize = @seen = Hash.new(0)
          def dispatch = 3000.times { |i| yield i }
          def perform(i)
            sleep 0.001 # long enough that the kills land during the run
            [i, i * i]
          end
          def completed(result, i)
            @seen[i] += 1 if result == [i, i * i]
          end
        end
        task = Results.new
        master = Divvy::Master.new(task, 4, retries: 10)
        killer = Thread.new { loop { sleep 0.03; master.workers.sample.kill(:KILL) } }
        master.run
        killer.kill
        mapped = Divvy.map(1..2000, workers: 3, retries: 10) do |i|
          Process.kill(:KILL, Process.pid) if rand < 0.002
          i.to_s
        end
        p [master.items_performed, master.items_failed, task.seen.size, task.seen.values.uniq,
           mapped == (1..2000).map(&:to_s)]
      RUBY
      expect(result.stdout).to eq("[3000, 0, 3000, [1], true]\n"), result.stderr
    end

    it 'delivers large items intact to the workers that replace killed ones' do
      Dir.mktmpdir do |dir|
        result = ruby_code(<<~RUBY, env: { 'DIR' => dir })
          require 'divvy'
          class LargeChaos
            include Divvy::Parallelizable
            def dispatch; 300.times { |i| yield((i % 256).chr * 262_144, i) }; end
            def perform(blob, i)
              raise "item \#{i} arrived damaged" unless blob == (i % 256).chr * 262_144
              File.write(File.join(ENV.fetch('DIR'), i.to_s), '')
              sleep 0.002
            end
          end
          master = Divvy::Master.new(LargeChaos.new, 3, retries: 10)
          #{run_while_killing('master')}
          p [master.items_performed, master.items_failed, master.spawn_count > 3]
        RUBY
        expect(result.status).to be_success, result.stderr
        expect(result.stdout).to eq("[300, 0, true]\n")
        expect(Dir.children(dir).map(&:to_i).sort).to eq((0...300).to_a)
      end
    end

    # Ruby code for a worker's after_fork: limits its address space to what
    # it maps now and 128 MB more, no room for an item of 256 MB.
    def limit_address_space
      <<~'RUBY'
        mapped = File.read('/proc/self/status')[/VmSize:\s+(\d+)/, 1].to_i * 1024
        Process.setrlimit(Process::RLIMIT_AS, mapped + (128 << 20))
      RUBY
    end

    # The first worker's address space leaves no room for the item's
    # String: it says so and leaves (or, when a smaller allocation of its
    # own fails first, it aborts), and the item goes to the next one at no
    # cost. Before, the worker spun for good once Ruby could not make the
    # String to read the item into.
    it 'reports a worker that cannot make room for a large item, and gives the item to another' do
      skip 'needs /proc/self/status to size the limit' unless File.exist?('/proc/self/status')
      Dir.mktmpdir do |dir|
        result = ruby_code(<<~RUBY, env: { 'MARK' => File.join(dir, 'limited') })
          require 'divvy'
          class Big
            include Divvy::Parallelizable
            def dispatch = yield('x' * (256 << 20))
            def after_fork(_worker)
              return if File.exist?(ENV.fetch('MARK'))

              File.write(ENV.fetch('MARK'), '')
              #{limit_address_space}
            end
            def perform(blob) = puts(blob.bytesize)
          end
          master = Divvy::Master.new(Big.new, 1)
          master.run
          p [master.items_performed, master.items_failed]
        RUBY
        expect(result.stdout).to eq("268435456\n[1, 0]\n"), result.stderr
        expect(result.stderr).to match(
          /^divvy: worker 1 \(pid \d+\) (stopped: NoMemoryError: cannot make room|died by SIGABRT)/
        ), result.stderr
      end
    end

    # Every worker's address space leaves no room for the large item: it
    # fails after the third worker died receiving it, and the run ends.
    # Before, it went from worker to worker for ever at no cost.
    it 'fails an item that kills every worker that receives it' do
      skip 'needs /proc/self/status to size the limit' unless File.exist?('/proc/self/status')
      result = ruby_code(<<~RUBY)
        require 'divvy'
        class Killer
          include Divvy::Parallelizable
          def dispatch
            yield 'small'
            yield 'x' * (256 << 20)
            yield 'tiny'
          end
          def after_fork(_worker)
            #{limit_address_space}
          end
          def perform(text) = puts(text.bytesize)
        end
        master = Divvy::Master.new(Killer.new, 1)
        master.run
        p [master.items_performed, master.items_failed, master.spawn_count]
      RUBY
      expect(result.stdout.lines.sort).to eq(["4\n", "5\n", "[2, 1, 4]\n"]), result.stderr
      expect(result.stderr).to match(/before it could start .*, as did the 2 workers sent it before$/)
    end
  end
end
