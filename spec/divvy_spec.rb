# frozen_string_literal: true

require 'divvy'

RSpec.describe Divvy do
  describe Divvy::Parallelizable do
    let(:bare) { Class.new { include Divvy::Parallelizable }.tap { |c| stub_const('BareTask', c) } }

    it 'records the classes that include it' do
      expect(described_class.parallelizable).to include(bare)
    end

    it 'makes dispatch and perform raise NotImplementedError naming the class' do
      expect { bare.new.dispatch }.to raise_error(NotImplementedError, 'BareTask must define #dispatch')
      expect { bare.new.perform(1) }.to raise_error(NotImplementedError, 'BareTask must define #perform')
    end

    it 'gives hooks that do nothing' do
      expect(bare.new.before_fork(nil)).to be_nil
      expect(bare.new.after_fork(nil)).to be_nil
    end
  end

  describe '.load' do
    it 'returns an instance of the one Parallelizable class the script defines, whatever its name' do
      Dir.mktmpdir do |dir|
        script = write_script(dir, 'one.rb', <<~RUBY)
          class PlainHelper; end
          class OnlyLoadedTask; include Divvy::Parallelizable; end
        RUBY
        expect(described_class.load(script)).to be_a(OnlyLoadedTask)
      end
    end

    it 'prefers the class named after the file to a helper defined after it' do
      Dir.mktmpdir do |dir|
        script = write_script(dir, 'dance_party.rb', <<~RUBY)
          class DanceParty; include Divvy::Parallelizable; end
          class DanceHelper; include Divvy::Parallelizable; end
        RUBY
        expect(described_class.load(script)).to be_a(DanceParty)
      end
    end

    it 'matches the file name without underscores and case, and the last part of a nested name' do
      Dir.mktmpdir do |dir|
        script = write_script(dir, 'nightclub.rb', <<~RUBY)
          module Venues; class NightClub; include Divvy::Parallelizable; end; end
          class BouncerHelper; include Divvy::Parallelizable; end
        RUBY
        expect(described_class.load(script)).to be_a(Venues::NightClub)
      end
    end

    it 'raises Divvy::Error naming the candidates when none is named after the file' do
      Dir.mktmpdir do |dir|
        script = write_script(dir, 'two.rb', <<~RUBY)
          class FirstLoadedTask; include Divvy::Parallelizable; end
          class SecondLoadedTask; include Divvy::Parallelizable; end
        RUBY
        expect { described_class.load(script) }
          .to raise_error(Divvy::Error, "#{script} defines several classes that include Divvy::Parallelizable " \
                                        '(FirstLoadedTask, SecondLoadedTask): name the task class after the file (Two)')
      end
    end

    it 'raises Divvy::Error naming a script that defines no task' do
      Dir.mktmpdir do |dir|
        script = write_script(dir, 'none.rb', "class PlainOldClass; end\n")
        expect { described_class.load(script) }
          .to raise_error(Divvy::Error, "#{script} defines no class that includes Divvy::Parallelizable")
      end
    end

    it 'raises LoadError for a missing script' do
      expect { described_class.load('/no/such/file.rb') }.to raise_error(LoadError)
    end
  end

  it 'is described in the README as it is: Master#failures is a count' do
    master = Divvy::Master.new(Class.new { include Divvy::Parallelizable }.new, 1)
    row = File.read(File.join(ROOT, 'README.md'))[/^\| `#failures` \|.*$/]
    expect(master.failures).to be_an(Integer)
    expect(row).to include('an Integer: how many failures happened')
  end

  it 'defines its errors under Divvy::Error, and Shutdown as a SignalException like Interrupt' do
    expect(Divvy::Error.superclass).to be(StandardError)
    expect(Divvy::Master::BootFailure.superclass).to be(Divvy::Error)
    expect(Divvy::Master::Shutdown.superclass).to be(SignalException)
  end
end
