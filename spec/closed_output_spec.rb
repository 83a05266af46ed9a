# frozen_string_literal: true

# Standard output and error that go away or fill up: `divvy ... | head`
# ends quietly with 141, a full disk is an error the user sees, and a
# closed stderr does not fail a clean run.
RSpec.describe 'closed or full output' do
  # A script whose `count` items each print a line.
  def chatty(dir, count: 2000, seconds: 0.01)
    write_script(dir, 'chatty.rb', <<~RUBY)
      class Chatty
        include Divvy::Parallelizable
        def dispatch = #{count}.times { |i| yield i }
        def perform(i)
          puts "line \#{i}"
          sleep #{seconds}
        end
      end
    RUBY
  end

  def divvy_command(*args)
    ['ruby', File.join(ROOT, 'exe', 'divvy'), *args.map(&:to_s)]
  end

  it 'stops at once, quietly, with 141, when the reader of its output goes away' do
    Dir.mktmpdir do |dir|
      reader, writer = IO.pipe
      err = File.join(dir, 'err')
      pid = spawn(spec_env, *divvy_command('-n', 2, chatty(dir)), out: writer, err: err)
      writer.close
      lines = Array.new(3) { reader.gets }
      reader.close # as `head -3` does
      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      status = wait_for(pid)
      expect(lines).to all(match(/\Aline \d+\n\z/))
      expect(status.exitstatus).to eq(141)
      expect(File.read(err)).to eq('')
      expect(Process.clock_gettime(Process::CLOCK_MONOTONIC) - started).to be < 5 # not 20 s of items
    end
  end

  it 'fails the items whose output could not be written to a full disk' do
    Dir.mktmpdir do |dir|
      result = run_command(divvy_command('-n', 2, chatty(dir, count: 4, seconds: 0)).then do |command|
        ['sh', '-c', "exec #{command.join(' ')} > /dev/full"]
      end)
      expect(result.exitstatus).to eq(1)
      expect(result.stderr).to include('its output could not be written: No space left on device')
      expect(result.stderr).to match(/0 performed, 4 failed/)
    end
  end

  it 'does not fail a clean run for a progress line it cannot write' do
    Dir.mktmpdir do |dir|
      status = wait_for(spawn(spec_env, *divvy_command('-p', '-n', 2, chatty(dir, count: 20, seconds: 0)),
                              out: File::NULL, err: :close))
      expect(status.exitstatus).to eq(0)
    end
  end
end
