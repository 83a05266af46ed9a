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
    it 'returns an instance of the last Parallelizable class the script defines' do
      Dir.mktmpdir do |dir|
        script = write_script(dir, 'two.rb', <<~RUBY)
          class FirstLoadedTask; include Divvy::Parallelizable; end
          class SecondLoadedTask; include Divvy::Parallelizable; end
        RUBY
        expect(described_class.load(script)).to be_a(SecondLoadedTask)
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

  it 'defines its errors under Divvy::Error, and Shutdown as a SignalException like Interrupt' do
    expect(Divvy::Error.superclass).to be(StandardError)
    expect(Divvy::Master::BootFailure.superclass).to be(Divvy::Error)
    expect(Divvy::Master::Shutdown.superclass).to be(SignalException)
  end
end
